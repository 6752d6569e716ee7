"""mitmdump script: several proxy profiles in one process, one per listening port.

    mitmdump --listen-host 127.0.0.1 -s proxies/lab_listeners.py \\
        --mode regular@8081 --mode reverse:http://127.0.0.1:5000@8082 \\
        --set listeners='{"8081": {"options": {"cache_heuristic_ttl": 300}},
                          "8082": {"misbehaviours": [{"name": "ignore-query-in-key"}]}}'

Each listener has its own cache, misbehaviours and access log (see ProfileListeners); for one
profile with mitmproxy's options, use lab_addons.py.
"""

from proxies.listeners import ProfileListeners

addons = [ProfileListeners()]
