// name: citation-cpc
// version: 5
// description: Hard negatives from the CPC neighbourhood of a cited patent. Positive: one patent the anchor
//   cites (chosen by the seed). Negatives: patents classified like the positive - in one of its CPC
//   subgroups first, widening to its main groups and then its subclasses when fewer than $k remain -
//   granted before the anchor and not within two citation hops of it in either direction (false-negative
//   guard), drawn at random by the seed. What changed from v4 (another sample, drawn from the same
//   patents): at the subgroup level a subgroup's patents are read a slice at a time through the (sg, b)
//   index of schema v2 (CLASSIFIED_AS.b is a hash of the patent's rk into 4,096 buckets; a slice is 32 of
//   them, 1/128 of every subgroup), starting at a slice the seed picks for the anchor and going on slice by
//   slice until $k pass; within a slice the order is the seeded key (rk * multiplier) mod 2^31-1 of the
//   rk the relationship carries, then the element id. So the subgroup level reads a few slices of a
//   neighbourhood instead of all of it, whatever its size. The cheap tests (not the positive, granted
//   before the anchor, not a neighbour) run before the guard's citation walk. The group and subclass
//   levels, for the few anchors that need them, are v4's.
// params:
//   $ids: List[String] - anchor patent ids of one batch
//   $k: Integer = 3 - hard negatives per anchor
//   $pos_mul: Integer - seed-derived odd multiplier that orders the anchor's citations
//   $neg_mul: Integer - seed-derived odd multiplier that picks the first slice and orders candidates
// returns: anchor_id, positive_id, negative_ids (List[String], at most $k), level (subgroup|group|subclass)
UNWIND $ids AS aid
MATCH (a:Patent {id: aid})
CALL (a) {
  MATCH (a)-[:CITES]->(p:Patent)
  RETURN p ORDER BY (p.rk * $pos_mul) % 2147483647, p.id LIMIT 1
}
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES]-(m)
  RETURN collect(DISTINCT m) AS near
}
CALL (a, p, near) {
  MATCH (p)-[c:CLASSIFIED_AS]->(:CPCSubgroup)
  WITH a, p, near, collect(c.sg) AS subgroups
  UNWIND range(0, 127) AS i
  CALL (a, subgroups, i) {
    WITH subgroups, (((a.rk * $neg_mul) % 2147483647 + i) % 128) * 32 AS low
    UNWIND subgroups AS sg
    MATCH (n)-[r:CLASSIFIED_AS]->()
    WHERE r.sg = sg AND r.b >= low AND r.b < low + 32
    WITH n, min(r.rk) AS rk
    RETURN n ORDER BY (rk * $neg_mul) % 2147483647, elementId(n)
  }
  WITH a, p, near, n
  WHERE CASE WHEN n <> p AND n.date < a.date AND NOT n IN near
        THEN NOT EXISTS { MATCH (n)-[:CITES]-(m) WHERE m IN near } ELSE false END
  LIMIT $k
  RETURN collect(n) AS n1
}
CALL (a, p, near, n1) {
  WITH a, p, near, n1 WHERE size(n1) < $k
  MATCH (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)<-[:PART_OF]-(:CPCSubgroup)
        <-[r:CLASSIFIED_AS]-(n)
  WHERE n <> p AND NOT n IN n1
  WITH n, min(r.rk) AS rk
  ORDER BY (rk * $neg_mul) % 2147483647, elementId(n)
  WITH n WHERE CASE WHEN n.date < a.date AND NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(m) WHERE m IN near } ELSE false END
  LIMIT $k
  RETURN collect(n) AS n2
}
CALL (a, p, near, n1, n2) {
  WITH a, p, near, n1, n2 WHERE size(n1) + size(n2) < $k
  MATCH (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(:CPCSubclass)
        <-[:PART_OF]-(:CPCGroup)<-[:PART_OF]-(:CPCSubgroup)<-[r:CLASSIFIED_AS]-(n)
  WHERE n <> p AND NOT n IN n1 AND NOT n IN n2
  WITH n, min(r.rk) AS rk
  ORDER BY (rk * $neg_mul) % 2147483647, elementId(n)
  WITH n WHERE CASE WHEN n.date < a.date AND NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(m) WHERE m IN near } ELSE false END
  LIMIT $k
  RETURN collect(n) AS n3
}
RETURN a.id AS anchor_id, p.id AS positive_id, [n IN (n1 + n2 + n3)[..$k] | n.id] AS negative_ids,
       CASE WHEN size(n1) >= $k THEN 'subgroup' WHEN size(n1) + size(n2) >= $k THEN 'group' ELSE 'subclass' END
         AS level
