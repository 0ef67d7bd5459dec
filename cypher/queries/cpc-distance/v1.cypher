// name: cpc-distance
// version: 1
// description: Negatives at a chosen CPC distance from the positive, for difficulty studies.
//   Positive: one patent the anchor cites (chosen by the seed). With the positive's first CPC
//   symbol S, a negative at level L shares S's ancestor at L but not the one below it:
//   subgroup = in S itself; group = in S's main group, not in S; subclass = in S's subclass, not in
//   its main group; class and section likewise; random = seeded random candidates passed in $rows.
//   Always granted before the anchor and outside two citation hops of it. The class and section
//   levels expand whole CPC branches per anchor: use --limit-anchors on large graphs.
// params:
//   $rows: List[Map] - {id: anchor id, cands: candidate ids in sampled order (level random only)}
//   $k: Integer = 3 - negatives per anchor
//   $level: String = subgroup - subgroup|group|subclass|class|section|random
//   $pos_mul: Integer - seed-derived odd multiplier that orders the anchor's citations
//   $neg_mul: Integer - seed-derived odd multiplier that orders candidate negatives
// returns: anchor_id, positive_id, negative_ids (List[String], at most $k), level ($level)
UNWIND $rows AS row
MATCH (a:Patent {id: row.id})
CALL (a) {
  MATCH (a)-[:CITES]->(p:Patent)
  RETURN p ORDER BY (p.rk * $pos_mul) % 2147483647, p.id LIMIT 1
}
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES*1..2]-(x:Patent)
  RETURN collect(DISTINCT x) AS guard
}
CALL (a, p, guard, row) {
  WITH a, p, guard, row WHERE $level = 'random'
  UNWIND range(0, size(row.cands) - 1) AS i
  WITH a, p, guard, i, row.cands[i] AS cid
  MATCH (n:Patent {id: cid})
  WHERE n.date < a.date AND n <> a AND n <> p AND NOT n IN guard
  WITH n, i ORDER BY i LIMIT $k
  RETURN collect(n.id) AS rnd
}
CALL (a, p, guard) {
  WITH a, p, guard WHERE $level <> 'random'
  MATCH (p)-[r:CLASSIFIED_AS]->(s0:CPCSubgroup)
  WITH a, p, guard, s0 ORDER BY r.sequence LIMIT 1
  MATCH (s0)-[:PART_OF]->(g0:CPCGroup)-[:PART_OF]->(sc0:CPCSubclass)-[:PART_OF]->(c0:CPCClass)
        -[:PART_OF]->(x0:CPCSection)
  WITH a, p, guard,
       CASE $level WHEN 'subgroup' THEN s0 WHEN 'group' THEN g0 WHEN 'subclass' THEN sc0 WHEN 'class' THEN c0
         ELSE x0 END AS top,
       CASE $level WHEN 'subgroup' THEN null WHEN 'group' THEN s0 WHEN 'subclass' THEN g0 WHEN 'class' THEN sc0
         ELSE c0 END AS finer
  MATCH (top)<-[:PART_OF*0..4]-(:CPCSubgroup)<-[:CLASSIFIED_AS]-(n:Patent)
  WHERE n.date < a.date AND n <> a AND n <> p AND NOT n IN guard
    AND (finer IS NULL OR NOT EXISTS { (n)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF*0..3]->(finer) })
  WITH DISTINCT n
  ORDER BY (n.rk * $neg_mul) % 2147483647, n.id LIMIT $k
  RETURN collect(n.id) AS near
}
RETURN a.id AS anchor_id, p.id AS positive_id, CASE WHEN $level = 'random' THEN rnd ELSE near END
         AS negative_ids, $level AS level
