"""The packet engine: frames walk the netfilter hooks through the ruleset,
with connection tracking and NAT.  Sans-IO: bytes and a clock in, verdicts
and frames to send out."""
