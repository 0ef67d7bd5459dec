// name: anchors
// version: 3
// description: Every patent that can be an anchor, with what the miner needs to split and sample:
//   its grant date (for the time split), rk (the integer key of seeded orderings) and whether it
//   cites a patent in the graph or has an inventional CPC subgroup. What changed from v2: elementId,
//   so that the miner can batch anchors in store order. The ETL writes patents in CPC order, so
//   store order puts anchors of one CPC neighbourhood in the same batch, and each batch reads a few
//   neighbourhoods instead of hundreds (which rows an anchor gets does not depend on its batch).
// params: none
// returns: id, date (String, ISO), rk, cites (Boolean), inventional (Boolean), node (String, elementId)
MATCH (p:Patent)
WHERE p.date IS NOT NULL
RETURN p.id AS id, toString(p.date) AS date, p.rk AS rk,
       EXISTS { (p)-[:CITES]->(:Patent) } AS cites,
       EXISTS { (p)-[:CLASSIFIED_AS {type: 'inventional'}]->(:CPCSubgroup) } AS inventional,
       elementId(p) AS node
