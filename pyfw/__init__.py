"""pyfw: an iptables-compatible firewall and NAT engine in Python."""

__version__ = "0.1.0"
# The iptables release whose behaviour pyfw reproduces, shown in messages.
IPTABLES_VERSION = "1.8.9"
