// name: texts
// version: 1
// description: The title and abstract of the given patents (the dataset's text of a patent is made from
//   them by the mining template) and, with $with_cpc, each one's first CPC subgroup by sequence (the label
//   of the kNN CPC accuracy and the CPC retrieval benchmark). Ids that are not in the graph give no row.
// params:
//   $ids: List[String] - patent ids
//   $with_cpc: Boolean = false - also return the first CPC subgroup
// returns: id, title (String, '' when missing), abstract (String, '' when missing), cpc (String or null)
UNWIND $ids AS pid
MATCH (p:Patent {id: pid})
OPTIONAL CALL (p) {
  WITH p WHERE $with_cpc
  MATCH (p)-[r:CLASSIFIED_AS]->(s:CPCSubgroup)
  RETURN s.code AS cpc ORDER BY r.sequence, s.code LIMIT 1
}
RETURN p.id AS id, coalesce(p.title, '') AS title, coalesce(p.abstract, '') AS abstract, cpc
