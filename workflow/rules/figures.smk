# Every figure is its own job: one rule per registered figure (FIGURE_RULES in common.smk), one job per PNG,
# running `eventspec figure NAME` on small JSON files. A rule's code digest covers its figure module and the
# renderer only, so restyling one figure reruns that figure's jobs alone.
for _figure, _rule in FIGURE_RULES.items():

    rule:
        name:
            f"figure_{_figure}"
        input:
            _rule.inputs,
        output:
            report(
                _rule.output,
                caption=f"../report/{_figure}.rst",
                category=_rule.category,
                subcategory=_rule.subcategory,
                labels=_rule.labels,
            ),
        log:
            figure_log(_figure, _rule.output),
        conda:
            software_env()
        params:
            **figure_params(_figure),
        shell:
            figure_command(_figure)


rule figures:
    input:
        figure_targets("Benchmark"),
