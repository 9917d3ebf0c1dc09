"""`pyfw daemon --tap`: pyfw as the gateway itself, on TAP devices.

device  the TAP devices (/dev/net/tun, virtio-net header, bridge, MTU)
vnet    the virtio-net header: checksum offload and GSO super-frames
engine  the engine with a neighbour cache, GSO and the host's own stack
faults  seeded loss / duplication / reordering for the fault tests
loop    the event loop between the devices, the engine and the timers
main    the command line
"""
