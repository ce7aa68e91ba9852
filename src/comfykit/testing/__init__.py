"""A real ComfyUI for tests, demos and benchmarks.

``comfykit.testing`` builds (once, cached) a self-contained ComfyUI 0.3.75 installation with its own
virtualenv and a random-weight SD1.5 checkpoint, and starts it on the CPU::

    from comfykit.testing import ComfyUIServer

    with ComfyUIServer() as server:
        print(server.url)   # http://127.0.0.1:<free port>

For pytest, add ``pytest_plugins = ["comfykit.testing.pytest_plugin"]`` to your ``conftest.py`` to
get the ``comfyui_server`` / ``comfyui_url`` fixtures and the ``--comfyui-url`` option.
``PostgresServer`` starts a throw-away PostgreSQL cluster the same way (for the service's store),
``RedisServer`` a throw-away Redis (for rate limits shared by replicas), and ``TcpProxy`` puts a
loopback proxy between a client and a server that tests can cut, stall or slow.
"""

from comfykit.testing._env import (
    CHECKPOINT_NAME,
    COMFYUI_VERSION,
    ComfyUIEnv,
    default_cache_dir,
    ensure_comfyui_env,
)
from comfykit.testing._postgres import PostgresServer, PostgresStartError, find_postgres_bin
from comfykit.testing._proxy import TcpProxy
from comfykit.testing._redis import RedisServer, RedisStartError, find_redis_server
from comfykit.testing._server import (
    ComfyUIServer,
    ComfyUIStartError,
    comfyui_url_or_local,
    free_port,
)

__all__ = [
    "CHECKPOINT_NAME",
    "COMFYUI_VERSION",
    "ComfyUIEnv",
    "ComfyUIServer",
    "ComfyUIStartError",
    "PostgresServer",
    "PostgresStartError",
    "RedisServer",
    "RedisStartError",
    "TcpProxy",
    "comfyui_url_or_local",
    "default_cache_dir",
    "ensure_comfyui_env",
    "find_postgres_bin",
    "find_redis_server",
    "free_port",
]
