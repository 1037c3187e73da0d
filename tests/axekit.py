"""axe-core over a page that has finished loading.

A click that navigates resolves once the new document exists, which can be before its style
sheets have been applied; axe would then judge the colours of an unstyled page. So the page's
``load`` event (every style sheet fetched and applied) comes first."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

AXE = Axe()


def axe_violations(page: Page) -> list[str]:
    """Each violation as ``id (impact): help — first three targets``; empty when none."""
    page.wait_for_load_state("load")
    results = AXE.run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(str(n["target"]) for n in v["nodes"][:3])
            for v in results.response["violations"]]
