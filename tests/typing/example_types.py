from amperity_async.custom.operations import REGISTRY
reveal_type(REGISTRY)
