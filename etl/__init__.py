"""PatentsView bulk files -> CSV files for ``neo4j-admin database import full``."""
