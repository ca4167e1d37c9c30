"""Governor mode: one service that receives the workflow and dispatches it to managers.

::

    clients --REQ--> governor (REP, PUB)  Manager(GovernorPool) + RemoteExecutor
                        | ROUTER (token; CURVE off loopback)      ^ events
                        v                                          |
       managers (qcgflow service --parent ...) --DEALER--> register/heartbeat/states

See docs/governor.md for the user's view and the security model.
"""
