"""What only web faces need: request context, rate limit, access log, guards in front of the apps."""
