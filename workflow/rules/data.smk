if config["data"]["source"] == "toy":

    rule toy_sequences:
        output:
            root=directory(config["data"]["root"]),
            manifest=toy_manifest(),
        log:
            f"{RESULTS}/logs/toy_sequences.log",
        conda:
            software_env()
        params:
            cfg=config_json("toy"),
            code=code_digest("toyworld.manifest"),
        shell:
            "eventspec toy-sequences --config-json {params.cfg:q}"
            " --out {output.root} --manifest {output.manifest} --workers {threads} 2> {log}"


rule prepare_samples:
    input:
        data_inputs(),
    output:
        store=directory(sample_store("{split}")),
        digest=sample_digest("{split}"),
    log:
        f"{RESULTS}/logs/prepare_samples_{{split}}.log",
    conda:
        software_env()
    params:
        cfg=config_json("data", "samples"),
        code=code_digest("samples", "digest"),
    shell:
        "eventspec prepare-samples --config-json {params.cfg:q} --split {wildcards.split}"
        " --out {output.store} --digest {output.digest} 2> {log}"
