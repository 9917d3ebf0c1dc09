"""pyfw: an iptables-compatible firewall and NAT engine in Python."""

from pyfw._native import install_guard as _install_guard

__version__ = "0.1.0"
# The iptables release whose behaviour pyfw reproduces, shown in messages.
IPTABLES_VERSION = "1.8.9"

_install_guard()  # before any compiled module is imported (see pyfw._native)
