"""JUnit XML for ``mer-eval regress --junit``: one testcase per metric (a failure carries the numbers and the
lost samples), one errored testcase per version mismatch, and one errored testcase when nothing was checked
(a suite of skipped testcases must not read as a pass)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mer_eval.reports.regress import _fmt


def regress_junit(res) -> str:
    suite = ET.Element("testsuite", name="mer-eval regress", tests="0", failures="0", errors="0", skipped="0")
    n = fails = errors = skipped = 0
    if res.mismatches:
        for mm in res.mismatches:
            n += 1
            errors += 1
            tc = ET.SubElement(suite, "testcase", classname="mer_eval.regress.versions", name=mm.split(":")[0])
            ET.SubElement(tc, "error", message=mm, type="VersionMismatch").text = mm
    if res.not_checked:
        n += 1
        errors += 1
        tc = ET.SubElement(suite, "testcase", classname="mer_eval.regress.not_checked", name="not_checked")
        msg = f"NOT CHECKED: {res.not_checked}"
        ET.SubElement(tc, "error", message=msg, type="NotChecked").text = msg
    for c in res.checks:
        n += 1
        tc = ET.SubElement(suite, "testcase", classname="mer_eval.regress", name=c.metric)
        if c.regressed:
            fails += 1
            f = ET.SubElement(tc, "failure", message=c.message, type="Regression")
            f.text = c.message + "\n" + "\n".join(
                [f"{w['sample_id']}: {_fmt(w['baseline'])} -> {_fmt(w['run'])}" for w in c.worst_samples]
                + [f"lost {k}: {v}" for k, v in c.lost_samples.items()])
        elif c.diff is None:
            skipped += 1
            ET.SubElement(tc, "skipped", message=c.message)
        else:
            ET.SubElement(tc, "system-out").text = c.message
    suite.set("tests", str(n))
    suite.set("failures", str(fails))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
