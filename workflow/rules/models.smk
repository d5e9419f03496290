if config["data"]["source"] == "toy":

    rule toy_models:
        input:
            train=sample_digest("train"),
            test=sample_digest("test"),
        output:
            verifier=directory(config["models"]["verifier"]["path"]),
            drafter=directory(config["models"]["drafter"]["path"]),
            eval=f"{RESULTS}/models/toy_eval.json",
            manifest=models_manifest(),
        log:
            f"{RESULTS}/logs/toy_models.log",
        conda:
            software_env()
        params:
            cfg=config_json("toy_models"),
            code=code_digest("toy.trainer", "digest"),
            train=sample_store("train"),
            test=sample_store("test"),
        shell:
            "eventspec toy-models --config-json {params.cfg:q}"
            " --train {params.train} --test {params.test}"
            " --verifier-out {output.verifier} --drafter-out {output.drafter}"
            " --eval {output.eval} --manifest {output.manifest} 2> {log}"


rule extract_lm_head:
    input:
        model_inputs(),
    output:
        f"{RESULTS}/models/verifier_lm_head.safetensors",
    log:
        f"{RESULTS}/logs/extract_lm_head.log",
    conda:
        software_env()
    params:
        cfg=model_json("verifier"),
        code=code_digest("lm_head"),
    shell:
        "eventspec extract-lm-head --config-json {params.cfg:q} --out {output} 2> {log}"
