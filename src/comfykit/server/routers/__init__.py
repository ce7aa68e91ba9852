"""The service's routers: thin — parse, call a service, shape the response."""
