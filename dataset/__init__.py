"""The mined dataset: how mining's parts become files (``assemble``) and how training reads them (``reader``).

The format (``dataset.json`` ``format`` 2)::

    train.parquet, dev.parquet, test.parquet   anchor_id, positive_id, negative_1_id..negative_K_id, level
    texts.arrow                                id, text: the text of every patent the splits name, once,
                                               sorted by id (Arrow IPC, uncompressed, memory-mapped by
                                               the trainer)
    eval/queries.parquet                       query_id, text        the bounded, seeded benchmark
    eval/corpus.parquet                        corpus_id, text, cpc
    eval/qrels.parquet                         query_id, corpus_id, score
    eval/heldout.parquet                       id, text, cpc         patents granted on or after the test
                                                                     date (kNN CPC accuracy)
    dataset.json                               provenance, counts, timings; written last
"""
