from zoomcal.connectors.caldav.spec import SPEC, SPECS

__all__ = ["SPEC", "SPECS"]
