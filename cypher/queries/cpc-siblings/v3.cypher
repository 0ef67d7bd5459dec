// name: cpc-siblings
// version: 3
// description: Same rows as v2 (and v1), faster. For data without usable citations, or as a second signal.
//   Positive: another patent sharing the anchor's first inventional CPC subgroup (widening to its main
//   group when the anchor is alone there), chosen by the seed. Negatives: patents in the same subclass but
//   a different main group, granted before the anchor, outside two citation hops of it. Each subclass is
//   sorted once per batch; each anchor walks it in order, testing lazily (earlier, other main group, not
//   within two hops) until $k pass. What changed from v2: "other main group" lists the candidate's own
//   main groups (a few store reads) and tests membership, where v2's pattern between the candidate and
//   the anchor's group could be expanded from the group's side: 1.37x on the 1M graph.
// params:
//   $ids: List[String] - anchor patent ids of one batch
//   $k: Integer = 3 - hard negatives per anchor
//   $pos_mul: Integer - seed-derived odd multiplier that orders positive candidates
//   $neg_mul: Integer - seed-derived odd multiplier that orders candidate negatives
// returns: anchor_id, positive_id, negative_ids (List[String], at most $k), level (subgroup|group)
UNWIND $ids AS aid
MATCH (a:Patent {id: aid})
CALL (a) {
  MATCH (a)-[r:CLASSIFIED_AS {type: 'inventional'}]->(s:CPCSubgroup)-[:PART_OF]->(g:CPCGroup)
  RETURN s, g ORDER BY r.sequence LIMIT 1
}
CALL (a, s, g) {
  OPTIONAL MATCH (s)<-[:CLASSIFIED_AS]-(p1:Patent) WHERE p1 <> a
  WITH a, g, p1 ORDER BY (p1.rk * $pos_mul) % 2147483647, p1.id LIMIT 1
  OPTIONAL MATCH (g)<-[:PART_OF]-(:CPCSubgroup)<-[:CLASSIFIED_AS]-(p2:Patent) WHERE p1 IS NULL AND p2 <> a
  WITH p1, p2 ORDER BY (p2.rk * $pos_mul) % 2147483647, p2.id LIMIT 1
  RETURN coalesce(p1, p2) AS p, CASE WHEN p1 IS NULL THEN 'group' ELSE 'subgroup' END AS level
}
WITH a, g, p, level WHERE p IS NOT NULL
MATCH (g)-[:PART_OF]->(sc:CPCSubclass)
WITH sc, collect([a, g, p, level]) AS members
CALL (sc) {
  MATCH (sc)<-[:PART_OF]-(:CPCGroup)<-[:PART_OF]-(:CPCSubgroup)<-[:CLASSIFIED_AS]-(n)
  WITH DISTINCT n
  ORDER BY (n.rk * $neg_mul) % 2147483647, n.id
  RETURN collect(n) AS ordered
}
UNWIND members AS m
WITH m[0] AS a, m[1] AS g, m[2] AS p, m[3] AS level, ordered
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES]-(x)
  RETURN collect(DISTINCT x) AS near
}
CALL (a, g, p, near, ordered) {
  UNWIND ordered AS n
  WITH n WHERE CASE WHEN n.date < a.date AND n <> p AND NOT n IN near
               THEN NOT g IN [(n)-[:CLASSIFIED_AS]->()-[:PART_OF]->(x) | x]
                    AND NOT EXISTS { MATCH (n)-[:CITES]-(x) WHERE x IN near } ELSE false END
  LIMIT $k
  RETURN collect(n.id) AS negs
}
RETURN a.id AS anchor_id, p.id AS positive_id, negs AS negative_ids, level
