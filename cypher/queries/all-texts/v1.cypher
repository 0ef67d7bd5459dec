// name: all-texts
// version: 1
// description: The title and abstract of every patent, in the order the store holds them (no sort: a
//   full-size graph's texts are streamed, never held). The miner reads this instead of fetching by id when
//   a dataset names most of the graph's patents, and keeps the ones it names.
// params: none
// returns: id, title (String, '' when missing), abstract (String, '' when missing)
MATCH (p:Patent)
RETURN p.id AS id, coalesce(p.title, '') AS title, coalesce(p.abstract, '') AS abstract
