"""Test services for pulpinit: fake MongoDB and AMQP servers that speak the real wire
protocols, TCP fault injection, and a sample server.conf.  The demo and the test suite
use them; production code never imports this package."""
