"""patentminer: PatentsView bulk dump -> Neo4j citation/CPC graph -> hard-negative training data."""

from __future__ import annotations

__version__ = "0.1.0"
