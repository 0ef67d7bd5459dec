"""Versioned Cypher files, the managed Neo4j runtime and the code that queries the graph."""
