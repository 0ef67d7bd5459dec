// name: anchors
// version: 2
// description: Every patent that can be an anchor, with what the miner needs to split and sample:
//   its grant date (for the time split), rk (the integer key of seeded orderings) and whether it
//   cites a patent in the graph or has an inventional CPC subgroup. What changed from v1: no ORDER BY;
//   the miner sorts the rows by id itself (2.5 s of the 17.5 s this query took on the 1M-patent graph).
// params: none
// returns: id, date (String, ISO), rk, cites (Boolean), inventional (Boolean)
MATCH (p:Patent)
WHERE p.date IS NOT NULL
RETURN p.id AS id, toString(p.date) AS date, p.rk AS rk,
       EXISTS { (p)-[:CITES]->(:Patent) } AS cites,
       EXISTS { (p)-[:CLASSIFIED_AS {type: 'inventional'}]->(:CPCSubgroup) } AS inventional
