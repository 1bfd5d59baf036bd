"""Workflows a lab plays through its nodes' admin APIs: a simulated working day, and (later)
scenario timelines. Everything here reaches nodes only through the client, like an operator."""
