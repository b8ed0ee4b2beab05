from zoomcal.connectors.ews.spec import SPEC

__all__ = ["SPEC"]
