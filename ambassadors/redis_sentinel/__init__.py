"""`podkit redis-ambassador`: localhost:6379 that always reaches the current Redis master.

The master is found through Sentinel (a majority of the reachable Sentinels must agree,
and the address must answer ROLE as master); the proxy moves bytes at L4, so every
Redis feature passes through, and closes every connection to a demoted master at once.
"""

from podkit.helper import Helper

helper = Helper(
    name="redis-ambassador",
    summary="localhost:6379 that always reaches the current Redis master, found through Sentinel",
    settings="podkit.ambassadors.redis_sentinel.settings:AmbassadorSettings",
    run="podkit.ambassadors.redis_sentinel.main:run",
    admin_port=9704,
)
