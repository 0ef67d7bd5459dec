// name: positive-cpc
// version: 1
// description: For each anchor, the first CPC symbol (lowest sequence) of the positive that citation-based
//   strategies pick for it (the cited patent first in the seeded order). The miner sorts anchors by it
//   before cutting batches when a strategy's negatives come from large CPC branches around the positive
//   (cpc-distance above the subgroup level): a batch then needs a few branches sorted instead of dozens.
//   A hint for speed only: which rows an anchor gets does not depend on its batch.
// params:
//   $ids: List[String] - anchor patent ids
//   $pos_mul: Integer - seed-derived odd multiplier that orders the anchor's citations
// returns: id, sym (String, null when the anchor cites nothing or its positive has no CPC symbol)
UNWIND $ids AS aid
MATCH (a:Patent {id: aid})
OPTIONAL CALL (a) {
  MATCH (a)-[:CITES]->(p:Patent)
  RETURN p ORDER BY (p.rk * $pos_mul) % 2147483647, p.id LIMIT 1
}
OPTIONAL CALL (p) {
  MATCH (p)-[r:CLASSIFIED_AS]->(s:CPCSubgroup)
  RETURN s.code AS sym ORDER BY r.sequence LIMIT 1
}
RETURN a.id AS id, sym
