from tests.liveness_keeper.support import lone_keeper

__all__ = ["lone_keeper"]
