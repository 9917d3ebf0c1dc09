"""Testing rulesets like code: a pytest plugin (pyfw.testing.plugin) and the
`Firewall` object it hands to tests.  Install with `pip install pyfw[testing]`."""

from pyfw.testing.firewall import Firewall, FirewallAssertion, Outcome, load_firewall

__all__ = ["Firewall", "FirewallAssertion", "Outcome", "load_firewall"]
