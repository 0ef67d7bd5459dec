// name: schema
// version: 2
// description: Uniqueness constraints for Patent.id and every CPC level's code, applied after
//   neo4j-admin import (which creates no schema); each constraint brings its own index, so every lookup
//   by id or code that mining does is an index seek. What changed from v1: an index on CLASSIFIED_AS
//   (sg, b), a subgroup's number and a patent's bucket, so that mining reads a slice of a subgroup's
//   patents by an index seek instead of all of them (citation-cpc@v5).
// params: none
// returns: nothing
CREATE CONSTRAINT patent_id IF NOT EXISTS FOR (p:Patent) REQUIRE p.id IS UNIQUE;
CREATE CONSTRAINT cpc_section_code IF NOT EXISTS FOR (n:CPCSection) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_class_code IF NOT EXISTS FOR (n:CPCClass) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_subclass_code IF NOT EXISTS FOR (n:CPCSubclass) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_group_code IF NOT EXISTS FOR (n:CPCGroup) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_subgroup_code IF NOT EXISTS FOR (n:CPCSubgroup) REQUIRE n.code IS UNIQUE;
CREATE INDEX patent_date IF NOT EXISTS FOR (p:Patent) ON (p.date);
CREATE INDEX classified_as_bucket IF NOT EXISTS FOR ()-[r:CLASSIFIED_AS]-() ON (r.sg, r.b);
