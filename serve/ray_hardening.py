"""Keep Serve replicas off interfaces they do not need.

Ray Serve 2.60 binds each replica's inter-deployment gRPC server to `[::]:0` (all
interfaces), hard-coded in ray/serve/_private/replica.py, while every other Ray server binds to
the node's IP. Other nodes reach a replica through its node IP, so binding there loses nothing
and keeps a loopback test cluster on loopback. Each deployment calls it first thing in its
constructor, which Serve runs before it starts that server (a module-level call is not
enough: Serve pickles deployment classes by value, so their module may never be imported).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("ray.serve")
_MARK = "_trackside_node_ip_bind"


def bind_replica_grpc_to_node_ip() -> bool:
    """Patch the replica module's bind helper; a no-op (False) if Ray changed shape."""
    try:
        import ray
        from ray.serve._private import replica as replica_module
    except ImportError:
        return False
    original = getattr(replica_module, "add_port_to_grpc_server", None)
    if original is None or getattr(original, _MARK, False):
        return False

    def add_port_on_node_ip(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            ip = ray.util.get_node_ip_address()
            host = f"[{ip}]" if ":" in ip else ip
            address = f"{host}:{address[len('[::]:') :]}"
        return original(server, address)

    setattr(add_port_on_node_ip, _MARK, True)
    setattr(replica_module, "add_port_to_grpc_server", add_port_on_node_ip)  # noqa: B010
    return True
