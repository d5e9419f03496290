rule extract_features:
    input:
        samples=sample_digest("{split}"),
        models=model_inputs(),
    output:
        directory(feature_part("{split}", "{shard}")),
    params:
        cfg=config_json("models", "extract"),
        code=code_digest("extract"),
        samples=sample_store("{split}"),
        shards=config["extract"]["shards"],
    resources:
        gpu=gpus("verifier", "drafter"),
    log:
        f"{RESULTS}/logs/extract_{{split}}_{{shard}}.log",
    shell:
        "eventspec extract --config-json {params.cfg:q} --split {wildcards.split}"
        " --samples {params.samples} --samples-digest {input.samples}"
        " --shard {wildcards.shard} --shards {params.shards} --resume --threads {threads}"
        " --out {output} 2> {log}"


rule gather_features:
    input:
        lambda w: [feature_part(w.split, i) for i in range(config["extract"]["shards"])],
    output:
        store=directory(feature_store("{split}")),
        digest=feature_digest("{split}"),
    params:
        code=code_digest("extract"),
    log:
        f"{RESULTS}/logs/gather_{{split}}.log",
    shell:
        "eventspec gather {input} --out {output.store} --digest {output.digest} 2> {log}"
