"""The department network node: a TCP fault proxy between the other nodes (as Toxiproxy is).

Modules, one concern each:
    node          owns the live config (links and their toxics) and wires the rest together
    forwarder     the asyncio forwarder: listeners, connections, pumps, resets, partitions
    toxics        which toxics apply to a connection and how they cut and pace data
    admin_routes  the admin API: links, toxics set and cleared live, counters, config, log
"""
