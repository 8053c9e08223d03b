"""Failures talking to a node, sorted by what the caller does next.

A node that *answers* with an HTTP error is not an exception: the client returns the
response so Meilisearch's error object reaches the user byte for byte. These exceptions
mean the node did not give us a usable answer at all. Every one carries the node URL and
a short human reason; the transport's own exception is chained as `__cause__`.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every failure to get a usable answer from a node."""

    def __init__(self, node_url: str, reason: str) -> None:
        super().__init__(f"{node_url}: {reason}")
        self.node_url = node_url
        self.reason = reason


class NodeUnavailable(NodeError):
    """The node could not be reached or the exchange broke off: try another replica.

    Connection refused or reset, DNS failure, the node closing the connection before the
    response was complete, or (as `NodeTimeout`) our deadline passing.
    """


class NodeTimeout(NodeUnavailable):
    """Our deadline for this call passed; the node may still be working on it.

    For a write this means the outcome is unknown, not that it failed.
    """


class NodeProtocolError(NodeError):
    """The node answered, but not in a shape we can read (e.g. a body that is not JSON).

    Retrying elsewhere is pointless for the same request; it points at a misrouted URL or
    something that is not a Meilisearch node.
    """
