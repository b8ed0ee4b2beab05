from zoomcal.connectors.graph.spec import SPEC

__all__ = ["SPEC"]
