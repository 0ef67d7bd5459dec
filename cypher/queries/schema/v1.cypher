// name: schema
// version: 1
// description: Uniqueness constraints for Patent.id and every CPC level's code, applied after
//   neo4j-admin import (which creates no schema). Each constraint brings its own index, so
//   every lookup by id or code that mining does is an index seek.
// params: none
// returns: nothing
CREATE CONSTRAINT patent_id IF NOT EXISTS FOR (p:Patent) REQUIRE p.id IS UNIQUE;
CREATE CONSTRAINT cpc_section_code IF NOT EXISTS FOR (n:CPCSection) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_class_code IF NOT EXISTS FOR (n:CPCClass) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_subclass_code IF NOT EXISTS FOR (n:CPCSubclass) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_group_code IF NOT EXISTS FOR (n:CPCGroup) REQUIRE n.code IS UNIQUE;
CREATE CONSTRAINT cpc_subgroup_code IF NOT EXISTS FOR (n:CPCSubgroup) REQUIRE n.code IS UNIQUE;
CREATE INDEX patent_date IF NOT EXISTS FOR (p:Patent) ON (p.date);
