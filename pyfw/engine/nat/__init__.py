"""NAT as nf_nat does it: bindings chosen on a connection's first packet
(the nat table, else a null binding), every packet rewritten to them with
incremental checksum updates, replies and ICMP errors translated back."""

from pyfw.engine.nat.core import ConntrackIndex, Nat, invert, manip_of_hook, nat_initialized
from pyfw.engine.nat.manip import MANIP_DST, MANIP_SRC

__all__ = ["MANIP_DST", "MANIP_SRC", "ConntrackIndex", "Nat", "invert", "manip_of_hook", "nat_initialized"]
