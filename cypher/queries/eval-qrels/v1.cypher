// name: eval-qrels
// version: 1
// description: The relevance judgements of the citation retrieval benchmark: every patent in the graph
//   that a query patent cites is relevant to it.
// params:
//   $ids: List[String] - query patent ids
// returns: query_id, corpus_id
UNWIND $ids AS qid
MATCH (q:Patent {id: qid})-[:CITES]->(c:Patent)
RETURN q.id AS query_id, c.id AS corpus_id
