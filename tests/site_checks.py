"""A site check, as a site would plug one in (``checks: [tests.site_checks:rows_are_even]``)."""
from symphony.engine import Problem


def rows_are_even(spec):
    for item in spec.items:
        if int(item.id.rsplit("-", 1)[-1]) % 2:
            yield Problem(spec.file, spec.locator.line(item.origin), "items", f"row {item.id} is odd (site rule)")
