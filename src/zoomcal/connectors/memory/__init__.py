from zoomcal.connectors.memory.spec import SPEC

__all__ = ["SPEC"]
