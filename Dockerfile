# fieldcal's image: the web host (`fieldcal serve`) and the outbox worker (`fieldcal worker`).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FIELDCAL_INSTANCE=/var/lib/fieldcal
WORKDIR /app
COPY pyproject.toml README.md wsgi.py radicale.config ./
COPY server ./server
COPY plugins ./plugins
COPY feeds ./feeds
COPY share ./share
COPY deploy ./deploy
# editable: gunicorn serves wsgi.py (Flask + CalDAV under /dav) from this folder
RUN pip install -e . && useradd --system --home /var/lib/fieldcal fieldcal \
    && mkdir -p /var/lib/fieldcal && chown fieldcal /var/lib/fieldcal
USER fieldcal
EXPOSE 8000
CMD ["fieldcal", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
