"""What the hub and the station agent share: the wire codec and the aioice seams (host
addresses, patient consent checks).

Nothing here imports the hub or the agent, and nothing needs more than the agent's own
dependencies (msgpack, aioice), so an office PC installs this package with the agent only.
"""
