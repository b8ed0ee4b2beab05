from zoomcal.connectors.zoom.spec import SPEC

__all__ = ["SPEC"]
