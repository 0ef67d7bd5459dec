// name: cpc-distance
// version: 4
// description: Negatives at a chosen CPC distance from the positive, for difficulty studies. Positive: one
//   patent the anchor cites (chosen by the seed). With the positive's first CPC symbol S, a negative at
//   level L shares S's ancestor at L but not the one below it: subgroup = in S itself; group = in S's main
//   group, not in S; subclass = in S's subclass, not in its main group; class and section likewise;
//   random = seeded random candidates passed in $rows. Always granted before the anchor and outside two
//   citation hops of it. Each CPC branch is sorted once per batch in a seeded order ((rk * multiplier)
//   mod 2^31-1); each anchor walks it in order and tests lazily until $k pass. The rows of v1-v3 wherever
//   rk tells patents apart (v1-v3 break rk ties by id, v4 by element id). What changed from v3: a branch
//   is ordered by the rk its CLASSIFIED_AS relationships carry (import format 2), read from the branch's
//   relationships, which the import lays side by side, instead of from every patent's node.
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
OPTIONAL CALL (p) {
  WITH p WHERE $level <> 'random'
  MATCH (p)-[r:CLASSIFIED_AS]->(s0:CPCSubgroup)
  WITH s0 ORDER BY r.sequence LIMIT 1
  MATCH (s0)-[:PART_OF]->(g0:CPCGroup)-[:PART_OF]->(sc0:CPCSubclass)-[:PART_OF]->(c0:CPCClass)
        -[:PART_OF]->(x0:CPCSection)
  RETURN CASE $level WHEN 'subgroup' THEN s0 WHEN 'group' THEN g0 WHEN 'subclass' THEN sc0 WHEN 'class' THEN c0
           ELSE x0 END AS top,
         CASE $level WHEN 'subgroup' THEN null WHEN 'group' THEN s0 WHEN 'subclass' THEN g0 WHEN 'class' THEN sc0
           ELSE c0 END AS finer
}
WITH top, collect([a, p, finer, row.cands]) AS members
CALL (top) {
  WITH top WHERE top IS NOT NULL
  MATCH (top)<-[:PART_OF*0..4]-(:CPCSubgroup)<-[r:CLASSIFIED_AS]-(n:Patent)
  WITH n, min(r.rk) AS rk
  ORDER BY (rk * $neg_mul) % 2147483647, elementId(n)
  RETURN collect(n) AS ordered
}
UNWIND members AS m
WITH m[0] AS a, m[1] AS p, m[2] AS finer, m[3] AS cands, ordered
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES]-(x)
  RETURN collect(DISTINCT x) AS near
}
CALL (a, p, near, cands) {
  WITH a, p, near, cands WHERE $level = 'random'
  UNWIND range(0, size(cands) - 1) AS i
  WITH a, p, near, i, cands[i] AS cid
  MATCH (n:Patent {id: cid})
  WHERE n.date < a.date AND n <> p
  WITH near, n, i ORDER BY i
  WITH n WHERE CASE WHEN NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(x) WHERE x IN near } ELSE false END
  LIMIT $k
  RETURN collect(n.id) AS rnd
}
CALL (a, p, near, finer, ordered) {
  UNWIND ordered AS n
  WITH n WHERE CASE WHEN n.date < a.date AND n <> p AND NOT n IN near
               THEN CASE $level
                      WHEN 'subgroup' THEN true
                      WHEN 'group' THEN NOT EXISTS { (n)-[:CLASSIFIED_AS]->(finer) }
                      WHEN 'subclass' THEN NOT finer IN [(n)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(x) | x]
                      WHEN 'class' THEN NOT finer IN [(n)-[:CLASSIFIED_AS]->()-[:PART_OF]->()-[:PART_OF]->(x) | x]
                      ELSE NOT finer IN [(n)-[:CLASSIFIED_AS]->()-[:PART_OF]->()-[:PART_OF]->()-[:PART_OF]->(x) | x]
                    END
                    AND NOT EXISTS { MATCH (n)-[:CITES]-(x) WHERE x IN near } ELSE false END
  LIMIT $k
  RETURN collect(n.id) AS close
}
RETURN a.id AS anchor_id, p.id AS positive_id, CASE WHEN $level = 'random' THEN rnd ELSE close END
         AS negative_ids, $level AS level
