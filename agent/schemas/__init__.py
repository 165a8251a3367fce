"""The typed bodies of the agent's HTTP API (v1), one module per API family. Each is the
contract between a router in agent/api/ and the client (agent/client.py), declared once."""
