from zoomcal.connectors.google.spec import SPEC

__all__ = ["SPEC"]
