"""The safety gate: a question is screened before anything is retrieved or generated.

A clinical tool is asked, now and then, for what it must never give: a way to harm someone (a
lethal or undetectable dose, poisoning), the means of self-harm, or a way around its own rules
(ignore the sources, reveal the instructions, play another role, answer from "guideline text"
pasted into the question). :func:`question_screen` recognises those requests and returns the
category, the rule that matched (for the audit log) and the message the person is shown; for
self-harm that message is a safety message with where to get help, not a bare refusal.

It is deliberately a set of readable rules, not a model: every refusal can be explained to an
auditor by the rule that fired, the rules are unit-tested one by one, and it costs microseconds.
What it must not do is refuse legitimate toxicology ("toxic dose of paracetamol for NAC",
"digoxin toxicity management") or suicide-prevention care ("how to assess suicide risk"), so
the rules look for *intent* (harming a person, concealment, first-person means) and *control*
phrases (ignore + instructions, reveal + prompt), never for a drug, a dose or the word "lethal"
alone. The evaluation set ``clinic_app/eval_data/safety_questions.jsonl`` holds adversarial
questions and legitimate look-alikes; the targets are in its test and ``make bench
BENCH=safety_gate``.

Text pasted into a question is never a source in any case (the prompt puts the question apart
from the numbered passages, and citations are checked against the library's passages only); the
gate refuses a question that asks for pasted text to be used as the source, so that no answer is
built around it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

HARM: Final = "harm"
SELF_HARM: Final = "self_harm"
OVERRIDE: Final = "override"
REVEAL: Final = "reveal"
ROLEPLAY: Final = "roleplay"
PASTED_SOURCE: Final = "pasted_source"
CATEGORIES: Final = (HARM, SELF_HARM, OVERRIDE, REVEAL, ROLEPLAY, PASTED_SOURCE)

MESSAGES: Final[dict[str, str]] = {
    HARM: (
        "This question asks how to harm a person, so it is not answered. The guideline library "
        "can help recognise and treat poisoning or overdose: ask about the assessment or the "
        "management instead. If someone is in danger now, call your local emergency number."
    ),
    SELF_HARM: (
        "It sounds like you might be thinking about harming yourself. You deserve support, and "
        "you do not have to face this alone. If you are in immediate danger, call your local "
        "emergency number (112 in Europe, 911 in North America) or go to the nearest emergency "
        "department. You can talk to someone now: call or text 988 (Suicide & Crisis Lifeline, "
        "US), call Samaritans on 116 123 (UK and Ireland), or find a helpline in your country at "
        "findahelpline.com. Telling someone you trust, or your doctor, can help too. This tool "
        "will not give information about means of self-harm."
    ),
    OVERRIDE: (
        "Answers come only from the guidelines in the library and follow the tool's rules; a "
        "request to ignore, bypass or replace them is not followed. Ask the clinical question "
        "on its own."
    ),
    REVEAL: (
        "The assistant's instructions, configuration and credentials are not shared. Ask a "
        "clinical question, or see the documentation for how the tool works."
    ),
    ROLEPLAY: (
        "The assistant does not take on other roles or personas, and its rules do not change "
        "with one. Ask the clinical question directly."
    ),
    PASTED_SOURCE: (
        "Text pasted into a question is never used as a source: answers come only from the "
        "guidelines in the library, which an administrator adds and versions. Ask the question "
        "without the pasted text, or ask an administrator to add the guideline."
    ),
}


@dataclass(frozen=True)
class ScreenResult:
    """The gate's verdict on one question.

    ``category`` is ``None`` when the question may go on to retrieval; otherwise one of
    :data:`CATEGORIES`, with ``rule`` (the name of the rule that matched, for the audit log) and
    ``message`` (what the person is shown).
    """

    category: str | None = None
    rule: str = ""
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.category is None


# Characters that hide a phrase from a pattern without changing what a reader or a model sees.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def normalise(text: str) -> str:
    """Lower case, compatibility forms folded (full-width letters, ligatures), invisible
    characters removed, quotes and dashes made plain, runs of white space made one space."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).lower()
    text = re.sub(r"[\u2018\u2019\u02bc`´]", "'", text)
    text = re.sub(r"[\u201c\u201d\u00ab\u00bb]", '"', text)
    text = re.sub(r"[\u2010-\u2015]", "-", text)
    return re.sub(r"\s+", " ", text).strip()


# ----------------------------------------------------------------------------- vocabulary
# Kept as small regex fragments so each rule below reads as a sentence.
_PERSON = (
    r"(?:some ?one|some ?body|a person|a human|people|him|her|them|my (?:wife|husband|partner|"
    r"boss|mother|mum|mom|father|dad|son|daughter|child|kid|baby|neighbou?r|roommate|ex|"
    r"girlfriend|boyfriend|brother|sister|grand(?:ma|pa|mother|father)|colleague|co-?worker|"
    r"teacher|patient|uncle|aunt|friend|family)|an? (?:elderly|old|sleeping|unconscious|"
    r"patient|child|baby|enemy|rival|man|woman|relative|resident)|the (?:patient|baby|child|"
    r"resident|old (?:man|woman|lady)|neighbou?r|witness|victim|target)|(?:my|the|a) (?:victim|"
    r"target|enemy|rival))"
)
_HARM_VERB = (
    r"(?:kill|murder|poison|euthani[sz]e|finish (?:\w+ )?off|knock (?:\w+ )?out|"
    r"incapacitate|silence|make (?:\w+ )?(?:die|stop breathing))"
)
# Someone the asker has a relationship or a grudge with: intent, where "a child" or "the
# patient" is usually a clinical population.
_TARGET = (
    r"(?:some ?one|some ?body|a person|a human|him|her|them|my (?:wife|husband|partner|boss|"
    r"mother|mum|mom|father|dad|son|daughter|child|kid|baby|neighbou?r|roommate|ex|girlfriend|"
    r"boyfriend|brother|sister|grand(?:ma|pa|mother|father)|colleague|co-?worker|teacher|uncle|"
    r"aunt|friend|family|step\w+|in-laws?|\w+-in-law)|(?:my|the|a) (?:victim|target|enemy|"
    r"rival))"
)
_CONCEAL = (
    r"(?:undetect(?:able|ed)|untrace(?:able|d)|without (?:a |any )?(?:trace|detection|"
    r"(?:any ?one|any ?body|them|him|her|the (?:police|family|staff|nurses?|doctors?|"
    r"coroner|pathologist)) (?:noticing|knowing|finding out|suspecting|realising|realizing))|"
    r"(?:not|never|won't|wont|doesn't|doesnt|wouldn't|wouldnt|cannot|can't|cant|hard to|"
    r"difficult to|impossible to) (?:be )?(?:show(?:ing)? up|detected|detect|picked up|"
    r"traced|trace|caught|found) (?:on|in|at|by|during) (?:an? |the |any |routine |standard )?"
    r"(?:tox(?:icology)?|(?:drug |tox )?screens?|autopsy|autopsies|post-?mortems?|blood ?tests?|"
    r"drug tests?|coroner|pathologist|police|forensic\w*)|"
    r"(?:look|seem|appear|pass) (?:like|as) (?:a |an )?(?:natural causes|natural death|"
    r"an accident|accidental|a heart attack|sids|a cardiac arrest|suicide|sudden death)|"
    r"get away with|cover (?:it )?up|no one (?:will|would) know|nobody (?:will|would) know|"
    r"leaves? no trace|hard to detect|avoid (?:an? )?(?:autopsy|detection|suspicion))"
)
_SELF = r"(?:i|i'm|im|i am|i've|ive|i'd|id|me|myself|my)"
_DIE = (
    r"(?:die|be dead|kill (?:my ?self|me)|end (?:it(?: all)?|my (?:own )?life|things|my pain)|"
    r"not wake up|never wake up|stop (?:waking up|living|breathing)|be gone|go to sleep forever|"
    r"sleep forever|commit suicide|suicide|off myself|unalive)"
)

# "Kill" and "wreck" aimed at something other than a person are clinical ("kill bacteria").
_NOT_A_PERSON = (
    r"(?:the |any |all |most |off |of )?(?:bacteria\w*|germs?|microbes?|(?:micro)?organisms?|"
    r"virus\w*|fung\w*|cells?|tumou?rs?|cancer\w*|pain|parasites?|lice|worms?|bugs?|spores?|"
    r"mrsa|c\.? ?diff\w*|pseudomonas|yeast|candida|mites?|scabies|the infection|infection|"
    r"the time|time|the mood|the vibe|the buzz|it for)\b"
)
# An outcome for another person that only someone meaning harm asks how to bring about.
_HARM_OUTCOME = (
    rf"(?:\b(?:would|will|could|might|to|enough to|going to|gonna|just|that)\s+kill\b"
    rf"(?!\s+{_NOT_A_PERSON})|\bkills? (?:an?|my|him|her|them|some ?one|some ?body)\b"
    rf"(?!\s+{_NOT_A_PERSON})|\bmake (?:\w+ ){{1,4}}?(?:stop breathing|never wake up|sleep "
    rf"forever|comfortable (?:permanently|forever|for good))\b|\bso (?:he|she|they|my \w+|"
    rf"(?:the|my) (?:old|baby|child|patient)\w*) (?:\w+ ){{0,2}}?(?:sleeps? forever|never "
    rf"wakes? up|(?:doesn'?t|does not|won'?t|will not) wake up|stops? breathing)\b|\bstops? (?:his|"
    rf"her|their|my \w+'?s?) (?:heart|breathing)\b|"
    r"\b(?:how (?:to|do i|can i|could i|would i)|want to|going to|gonna|i'?ll|help me|way to|"
    r"enough to|to|could i|can i) make (?:him|her|them|my \w+|(?:the|a|an) (?:\w+ ){1,4}?)"
    r"(?:bleed|die|stop breathing|crash|arrest|seize|go hypo)\b|"
    r"\bstop (?:a |an |the |my |his |her |their )?(?:[\w-]+ ){0,3}?(?:\w+'s|his|her|their) "
    r"heart\b|\b(?:wreck|destroy|fry|shut down|ruin) (?:their|his|her|someone'?s|my \w+'?s?) "
    r"(?:liver|kidneys?|heart|brain|lungs)\b|\bget rid of (?:some ?one|some ?body|him|her|"
    r"them|my \w+)\b(?!'s)|\bstop (?:his|her|their) heart\b)"
)
# Hiding what was done: an outcome that passes as natural, a record altered, a getaway.
_COVER_UP = (
    r"(?:\b(?:look|looks|seem|seems|appear|appears|pass|passes)(?: \w+)? (?:like |as )?"
    r"(?:a |an )?(?:natural(?: causes| death)?|normal (?:cardiac arrest|death)|an? accident|"
    r"accidental|a heart attack|sids|cot death|a cardiac arrest|suicide|sudden death|"
    r"(?:his|her|their) (?:cancer|illness|disease))\b|"
    r"\bso (?:that )?(?:the )?(?:coroner|police|pathologist|family|gp|nobody|no one|"
    r"nothing|anyone|staff|nurses?|doctors?|they|he|she) (?:\w+ ){0,2}?(?:puts?|thinks?|"
    r"believes?|would|will|won't|wont|doesn't|doesnt|don't|dont|can't|cant|finds?|notices?|"
    r"questions?|suspects?|shows? up|tastes?)\b|"
    r"\b(?:nobody|no one|no-one|nothing) (?:would|will|could|can|is going to) (?:ever )?"
    r"(?:question|notice|suspect|know|find out|show up|trace it|detect it|tell)\b|"
    r"\bwithout (?:him|her|them|anyone|any ?body|(?:the |my |his |her )?(?:\w+ ){0,2}?\w+) "
    r"(?:tasting|noticing|knowing|realising|realizing|suspecting|finding out|clocking|"
    r"spotting|catching on)\b|\blong gone\b|\buntrace(?:able|d)\b|"
    r"\b(?:coroner|police|post ?-?mortem|autopsy|pathologist|investigators?|inquest)\b.{0,60}"
    r"\b(?:miss|overlook|not (?:find|detect|notice|see|pick)|fail to (?:find|detect|notice)|"
    r"never (?:find|know|detect))\b|"
    r"\b(?:miss|overlook)\w*\b.{0,30}\b(?:at|by|on|in) (?:the |a )?(?:post ?-?mortem|autopsy|"
    r"coroner|inquest)\b|"
    r"\b(?:put down|recorded|certified|written off|ruled|signed off|pass(?:es)? off) "
    r"(?:as|to) (?:a |an )?(?:natural|cot death|sids|an? accident|accidental|suicide|his "
    r"cancer|her cancer|old age|a heart attack|sudden)\b|"
    r"\blooks? like (?:he|she|they|it) (?:just )?(?:died|passed|went) (?:in (?:his|her|their) "
    r"sleep|naturally|peacefully)\b|"
    r"\bso (?:that )?it (?:just |only )?(?:looks?|seems?|appears?) (?:like|as if|natural|normal|"
    r"accidental)\b|\b(?:not|doesn'?t|won'?t|wouldn'?t|does not|will not) (?:look|seem|appear) "
    r"(?:strange|suspicious|odd|weird|unnatural|deliberate|intentional|like (?:murder|"
    r"foul play))\b|"
    r"\bwithout (?:being|getting|ever being) (?:caught|found out|detected|suspected)\b|"
    r"\b(?:traceable|trace|detectable|detect|detected|picked up|show up|found) (?:at|on|in|by|"
    r"during) (?:an? |the )?(?:autopsy|post ?-?mortem|coroner|inquest)\b|"
    r"\b(?:nobody|no one|no-one) (?:checks?|tests?|looks? at|measures?) (?:\w+ ){0,2}?levels\b|"
    r"\b(?:hospital|doctors?|lab|labs|they|anyone|nobody|police) (?:wouldn'?t|won'?t|would not|"
    r"can'?t|cannot|couldn'?t|will not) (?:pick up|detect|notice|find|spot|catch)\b|"
    r"\b(?:nobody|no one|no-one|noone) (?:\w+ ){0,2}?(?:works? out|figures? out|finds? out|"
    r"realises|realizes|suspects?|clocks?)\b.{0,20}\b(?:it was me|what i did|what happened)\b|"
    r"\b(?:must|should|needs? to|has to|have to|so (?:it|that it)) (?:not|never) (?:show|appear|"
    r"register|come up|be detected|be found)\b|"
    r"\b(?:least|less) likely to (?:be )?(?:noticed|spotted|traced|clocked|questioned|"
    r"suspected)\b|"
    r"\b(?:avoid|not) (?:sending|send|doing|do|running|run|ordering|order) (?:the |any |which )?"
    r"(?:\w+ ){0,2}?(?:bloods?|tox|levels?|samples?|tests?)\b.{0,40}\b(?:so|nobody|no one)\b|"
    r"\b(?:change|alter|falsify|edit|delete|doctor|fake|backdate|wipe|erase) (?:the |his |her |"
    r"their |my )?(?:\w+ ){0,2}?(?:mar|drug chart|charts?|records?|notes|(?:pump|pca) "
    r"(?:history|logs?|records?)|logs?)\b.{0,80}\b(?:so|coroner|nobody|no one|police|"
    r"cover|deliberately|on purpose)\b)"
)
# The speaker, and the speaker's death or injury as the aim.
_OWN_DEATH = (
    r"(?:\bkill (?:me|myself)\b|\b(?:i|me) (?:would |will |'d |could |might )?(?:die|dies)\b|"
    r"\bi (?:don't|dont|do not|won't|wont|never) wake(?: up)?\b|\bnot wake up\b|"
    r"\bend it(?: all)?\b|\bend my (?:own )?life\b|\b(?:works?|work) this time\b|"
    r"\bdon't just end up in\b|\bdont just end up in\b|\bunalive (?:me|myself)\b|"
    r"\bbleeds? enough to die\b|\b(?:before|until) (?:any ?one|some ?one|they) finds? me\b|"
    r"\bfor me to die\b|\bgo to sleep (?:and not wake|forever)\b)"
)
_PASTED_CONTENT = re.compile(
    r"\"[^\"]{25,}\"|'[^']{25,}'|:\s*\S.{40,}|-{3,}|```|\[\s*\{|<\s*\w+[^>]*>|=\s*\[|"
    r"\n\s*\n"
)
_RELY_ON_PASTED = re.compile(
    r"\b(?:use|using|based on|base (?:your|the) answer on|answer (?:only |purely |strictly )?"
    r"(?:from|using|with|according to|based on)|go (?:off|by)|per|according to|rely on|"
    r"stick to|work from|going by)\b (?:only |just |purely |strictly )?(?:this|that|these|it|them|"
    r"the (?:above|following|below|pasted|provided|attached|quoted|text|new|updated|revised)|"
    r"what i (?:pasted|quoted|gave|wrote|sent)|my (?:text|version|protocol|excerpt|guideline))"
    r"(?:(?: \w+){0,3}? (?:text|guidelines?|protocols?|polic(?:y|ies)|passages?|excerpts?|"
    r"quotes?|sources?|documents?|evidence|memo|version|recommendations?|wording|information|"
    r"info|data|extract|snippet|one|version)\b| ?(?:[.,;:!?]|$| and\b| instead\b| only\b|"
    r" not\b))|\bfrom the (?:\w+ ){0,2}?(?:field|block|json|yaml|documents?|context|"
    r"passages?|snippet|excerpt|list|sources?|text|data) (?:only|above|below)\b|"
    r"\b(?:supersedes?|replaces?|overrides?|takes? precedence over)\b.{0,40}\b(?:your|the|"
    r"everything|library|sources?|guidelines?|docs)\b|"
    r"\b(?:instead of|not|rather than|over|forget)\b (?:what(?:ever)? (?:you have|is in)|your "
    r"(?:\w+ )?(?:docs|documents|sources|library|guidelines|passages|data|knowledge base|books|"
    r"textbooks|references|database|knowledge)|"
    r"the library)\b|"
    r"\b(?:these|this|those|the following|the above) (?:are|is) (?:now )?(?:your|the) "
    r"(?:\w+ )?(?:passages?|sources?|evidence|guidelines?|context)\b|"
    r"\banswer (?:only |just )?(?:from|using) (?:them|it|these|this)\b"
)


# A person at risk: what they say about themselves, and what they ask for. Either alone is often
# clinical ("how many tablets were taken?", "patient says she is tired of life"); together, with
# no sign that the asker is writing about a patient, they are a request for means.
_DISTRESS = re.compile(
    r"\b(?:(?:want|wanna|wish) (?:to )?(?:die|be dead|not wake up|go to sleep and not wake|"
    r"disappear (?:forever|for good)|not be here|end it)|not wake up|tired of (?:life|living|"
    r"it all|everything|being alive)|done with (?:life|living|everything|it all)|can'?t go on|"
    r"(?:end|finish) (?:it all|everything|things|my life|it tonight)|i'?ve decided|i have decided|"
    r"made up my mind|unalive (?:my ?self|me)|kill (?:my ?self|me)|off myself|"
    r"don'?t want to (?:be here|live|be alive|wake up)|better off dead|no reason to live|"
    r"stockpil\w+|so it can'?t be reversed|if it (?:doesn'?t|does not|fails to) work|"
    r"(?:skip|no|without|spare me) (?:the )?(?:helpline|hotline|crisis line|samaritans)\w*|"
    r"want (?:it|this|everything|all (?:of )?this|it all) (?:to be over|over|to end|to stop)|"
    r"sleep forever|(?:stop )?being a burden|burden (?:on|to) (?:my|their|the) family|"
    r"(?:made|make) my decision|this is for me|for myself|not for a patient)\b"
)
_MEANS = re.compile(
    r"\b(?:how (?:many|much|high|long)|which (?:quantity|amount|drugs?|pills?|meds?|medicines?|"
    r"medications?|of (?:the|my|these|them))|what (?:dose|amount|quantity|combo|combination|"
    r"would|will|works?)|will (?:that|it|this) (?:do it|work|be enough)|do i need more|enough|"
    r"quickest|fastest|least painful|painless(?:ly)?|most reliable|(?:best|easiest|surest) way|"
    r"way to|with what'?s in the house|must i (?:take|inject|swallow)|less painful|which is|"
    r"(?:do it|work) (?:fastest|quickest|best)|fatal|lethal|at what (?:level|dose|amount))\b"
)
_CLINICIAN_FRAMING = re.compile(
    r"\b(?:(?:my|a|the|our|this|her|his) (?:patient|pt|client|resident|service user)s?|"
    r"presents?|presented|presenting|attend(?:s|ed)|admitted|referred|on the ward|in (?:ed|a&e|"
    r"the ed|clinic)|risk assessment|safety plan\w*|assess\w*|screen(?:ing)? for)\b"
)


# A deadly effect asked for together with a way of hiding it: each alone can be clinical ("which
# drugs cause fatal arrhythmias", "which drugs does a routine screen miss"), together they are not.
_DEADLY = re.compile(r"\b(?:fatal|lethal|deadly|kills?|die|death|stop (?:\w+ ){0,3}heart)\b")
_HIDDEN = re.compile(
    r"\b(?:not (?:be )?(?:on|in|detected (?:on|by)|picked up (?:on|by)|seen on) (?:a |the |any )?"
    r"(?:routine |standard |normal |hospital )?(?:tox(?:icology)?|drug|urine) screens?|"
    r"(?:hidden|hide|disguised?|concealed?|masked?) in (?:\w+ )?(?:food|drinks?|tea|coffee|meals?|"
    r"juice|soup)|target is|can'?t be (?:traced|detected)|without (?:a |any )?trace)\b"
)


def _harm_hidden(text: str) -> bool:
    """A deadly effect and a way of hiding it, in one request."""
    return bool(_DEADLY.search(text) and _HIDDEN.search(text))


def _self_harm(text: str) -> bool:
    """A first-person statement of distress and a request for means, not about a patient."""
    framing = _CLINICIAN_FRAMING.search(re.sub(r"\bnot (?:for )?(?:a|my|the) patient\b", "", text))
    # "give my neighbour something so he sleeps forever" is about another person: harm, below.
    someone_else = re.search(
        rf"\b(?:give|giving|put|inject|slip|make)\b.{{0,30}}\b{_TARGET}|\bso (?:he|she|they) ", text
    )
    return bool(_DISTRESS.search(text) and _MEANS.search(text) and not framing and not someone_else)


def _pasted_source(text: str) -> bool:
    """Text pasted into the question (a long quote, a block after a colon, a JSON or tag
    block) together with a request to answer from it rather than from the library."""
    return bool(_PASTED_CONTENT.search(text) and _RELY_ON_PASTED.search(text))


# (rule name, category, pattern). The first match decides; order: the most specific first.
_RULES: Final[tuple[tuple[str, str, re.Pattern[str]], ...]] = tuple(
    (name, category, re.compile(pattern))
    for name, category, pattern in (
        # --- self-harm: the person asking wants the means for themselves.
        (
            "self_harm_intent",
            SELF_HARM,
            rf"\b(?:i|i'm|im|i am) (?:want|wanna|going|gonna|plan(?:ning)?|intend|trying|"
            rf"ready|about|decided|thinking(?: about| of)?|tempted|considering)(?: to)? "
            rf"(?:to )?(?:\w+ ){{0,3}}?{_DIE}\b",
        ),
        (
            "self_harm_means_quantity",
            SELF_HARM,
            rf"\bhow (?:many|much)\b.{{0,80}}\b(?:of )?my\b.{{0,80}}\b(?:to|would|will|could|"
            rf"until|till|before|so (?:that )?i)\b.{{0,30}}\b{_DIE}",
        ),
        (
            "self_harm_means_first_person",
            SELF_HARM,
            r"\b(?:how (?:can|could|do|should|would) i|best way (?:for me )?to|easiest way to|"
            r"quickest way to|painless(?:ly)? (?:way )?to|way for me to|what would i need to)\b"
            r".{0,40}\b(?:kill (?:my ?self|me)|end my (?:own )?life|commit suicide|"
            r"(?:die|overdose|od|hang myself|cut myself|slit my wrists?)\b)",
        ),
        (
            "self_harm_method_request",
            SELF_HARM,
            r"\b(?:painless|peaceful|quick(?:est)?|easiest|sure(?:st)?|certain|reliable|"
            r"guaranteed|fool-?proof|best)\b.{0,25}\b(?:way|ways|method|methods|means|dose|"
            r"overdose|drug|pills?)\b.{0,25}\b(?:to (?:die|kill (?:my ?self|oneself|yourself))|"
            r"of (?:suicide|killing (?:my ?self|oneself|yourself))|for suicide|to commit suicide|"
            r"to end (?:my|one's|your) (?:own )?life)\b",
        ),
        (
            "self_harm_first_person_statement",
            SELF_HARM,
            r"\b(?:kill myself|end my (?:own )?life|suicide note|i don't want to (?:be alive|"
            r"live|wake up)|i dont want to (?:be alive|live|wake up)|want to be dead|"
            r"better off dead|"
            r"take all (?:of )?my (?:pills|tablets|meds|medication))\b",
        ),
        (
            "self_harm_means_for_own_death",
            SELF_HARM,
            rf"^(?!.*\b(?:my|a|the|our) (?:patient|pt|client|resident)s?\b).*(?:\b(?:how (?:many|"
            rf"much|high|long|deep)|what (?:dose|amount|combo|combination|level)|which|where|"
            rf"enough|is that|would \w+ (?:be )?enough)\b.{{0,160}}{_OWN_DEATH}|"
            rf"{_OWN_DEATH}.{{0,160}}"
            rf"\b(?:how (?:many|much|high|long)|what (?:dose|amount|combo)|enough|does it hurt)\b)",
        ),
        (
            "self_harm_third_party_means",
            SELF_HARM,
            r"\b(?:wants? to die|wants? to (?:kill|end) (?:him|her|them)sel(?:f|ves)|is suicidal)"
            r"\b.{0,80}\b(?:would be fatal|fatal|lethal|enough to (?:die|kill)|to (?:die|"
            r"be fatal))\b",
        ),
        (
            "self_harm_cutting",
            SELF_HARM,
            r"\bcut (?:myself |my (?:wrists?|arms?|legs?|thighs?|skin) )?(?:deeper|harder|more|"
            r"so (?:it|that)|enough)\b|\bhide (?:my )?(?:cuts|scars|marks|self-harm|cutting|"
            r"burns)\b|"
            r"\bwithout (?:\w+ ){0,6}noticing (?:the |my )?(?:marks|cuts|scars|burns)\b|"
            r"\bwhere (?:do|should|can) i cut\b(?!.{0,40}\b(?:escharotomy|fasciotomy|incision|"
            r"cord|suture|drain)\b)",
        ),
        (
            "self_harm_statement",
            SELF_HARM,
            r"\b(?:i don'?t want to be (?:here|alive) any ?more|i (?:want|wanna) to die|"
            r"i (?:want|wanna) die|so tired of (?:it all|all of it|living|being alive)|"
            r"kill me\b(?!.{0,10}\b(?:softly|now)\b))",
        ),
        # --- harm to another person.
        ("harm_outcome", HARM, _HARM_OUTCOME),
        ("harm_cover_up", HARM, _COVER_UP),
        (
            "harm_conceal",
            HARM,
            rf"(?:{_HARM_VERB}|dose|overdose|amount|inject|give|slip|put|add|lethal|fatal|"
            rf"poison|drug|pills?|insulin|potassium|kcl|digoxin|succinylcholine|sux|"
            rf"(?:how|what) (?:much|many))\b.{{0,160}}\b{_CONCEAL}",
        ),
        (
            "harm_conceal_first",
            HARM,
            rf"\b{_CONCEAL}\b.{{0,120}}\b(?:{_HARM_VERB}|lethal|fatal|poison\w*|dose|die|death)\b",
        ),
        (
            "harm_person",
            HARM,
            rf"\b(?:how (?:to|do i|can i|could i|would i|would you|should i|do you)|best way to|"
            rf"easiest way to|way to|i (?:want|need|plan|intend|am going|'m going) to|"
            rf"help me|help me to|trying to|wanna|gonna)\b.{{0,40}}\b{_HARM_VERB}\b.{{0,30}}"
            rf"\b{_PERSON}",
        ),
        (
            "harm_lethal_for_person",
            HARM,
            rf"\b(?:lethal|fatal|deadly|killing)\b.{{0,60}}\b(?:for|to|on|into|in) {_TARGET}\b",
        ),
        (
            "harm_slip",
            HARM,
            r"\b(?:slip|sneak|spike|crush (?:\w+ )?into|put (?:\w+ )?in|add (?:\w+ )?to|"
            r"lace|mix (?:\w+ )?into)\b.{0,60}\b(?:their|his|her|some ?one'?s|my (?:[\w-]+"
            r"(?:'s|s')? )?) ?"
            r"(?:drink|food|coffee|tea|meal|iv|drip|bag|water|juice|soup|bottle|feed|meds|"
            r"medications?|tablets|pills|inhaler|insulin)\b"
            r"(?!.{0,80}\b(?:drug.facilitated|assault (?:victim|patient)|presented|"
            r"presents|screen(?:ing)? for)\b)",
        ),
        (
            "harm_kill_target",
            HARM,
            rf"\b(?:kill|murder|poison|euthani[sz]e)\b (?:{_TARGET}|my \w+)\b",
        ),
        # --- reveal the instructions or configuration.
        (
            "reveal_prompt",
            REVEAL,
            r"\b(?:reveal|print|show|display|output|repeat|recite|dump|give|tell|list|share|"
            r"send|write out|copy|paste|leak|expose|what (?:is|are|were)|what's)\b.{0,40}?"
            r"\b(?:(?:your|its|ur) (?:\w+ ){0,3}?(?:system|initial|original|hidden|secret|"
            r"internal|developer|pre-?|full|complete|exact)|(?:the|this) (?:\w+ ){0,2}?(?:system|"
            r"hidden|secret|developer|pre-?))[ -]?(?:prompts?|instructions?|messages?|rules|"
            r"directives?|guidelines for (?:you|the (?:ai|model|assistant)))\b",
        ),
        (
            "reveal_your_instructions",
            REVEAL,
            r"\b(?:reveal|print|show|display|output|repeat|recite|dump|tell me|list|share|"
            r"what (?:are|were)|what's in)\b.{0,20}\byour (?:\w+ ){0,2}?(?:instructions|prompt|"
            r"rules|directives|configuration|config|settings|guardrails|programming)\b",
        ),
        (
            "reveal_verbatim",
            REVEAL,
            r"\b(?:everything|all the text|all text|the text|the words|what(?:ever)? (?:was|is) "
            r"written|the instructions|the prompt|the message)\b.{0,30}\b(?:above|before (?:this|"
            r"my)|"
            r"prior to (?:this|my)|you were given|you received|you were told)\b.{0,60}"
            r"\b(?:word for word|verbatim|exactly|in full|print|repeat|output)\b|"
            r"\b(?:word for word|verbatim)\b.{0,60}\b(?:instructions|prompt|above|"
            r"you were given)\b",
        ),
        (
            "reveal_given_instructions",
            REVEAL,
            r"\b(?:rules?|instructions?|prompts?|directives?|guidelines?|"
            r"restrictions?) (?:or \w+ )?"
            r"(?:that )?(?:you (?:were|have been|got) (?:given|told|programmed)|you received|given "
            r"to you|you (?:are|were) (?:following|running on|operating under))\b|"
            r"\bwhat (?:exactly )?(?:did|do|were|have) (?:\w+ ){0,2}?(?:tell|told|instruct(?:ed)?|"
            r"programm?(?:ed)?|say to|give) you\b|\b(?:at|from) the (?:very )?(?:start|beginning|"
            r"top) of (?:this|the|our) (?:conversation|chat|session|context)\b|"
            r"\b(?:repeat|print|output|copy|show|paste|reproduce|translate|summari[sz]e|quote|"
            r"echo|reveal)\b.{0,30}\b(?:text|words|everything|content|message|messages|prompt|"
            r"all of it) (?:above|before (?:this|my)|prior to)\b|\bstarting with ['\"]?you are\b|"
            r"\btranslate (?:your|the) (?:\w+ ){0,2}?(?:instructions|prompt|rules)\b|"
            r"\b(?:were|have) you (?:been )?(?:told|given|instructed|programmed|configured)\b|"
            r"\bbefore my (?:first )?(?:message|question) (?:came in|arrived|was sent)\b|"
            r"\b(?:paste|repeat|print|copy|give|quote|write)\b.{0,40}\bword for word\b",
        ),
        (
            "reveal_model_settings",
            REVEAL,
            r"\b(?:top[_ -]?p|top[_ -]?k|max(?:imum)?[_ ]?(?:new[_ ])?tokens|config(?:uration)? "
            r"files?|sampling (?:parameters|settings)|model (?:parameters|weights|settings|config)|"
            r"(?:which|what) (?:llm|language model|ai model|model|version) (?:are you|is this|"
            r"do you "
            r"use|powers|is running|are you running|runs)|(?:hidden|secret|internal|exact) "
            r"(?:rules?|instructions?|keywords?(?: list)?|filters?|prompt|blocklist|block list)|"
            r"keyword list|(?:get|work) (?:round|around) (?:them|it|the (?:filter|rules|check|"
            r"gate)|"
            r"your (?:rules|filter|checks?)))\b",
        ),
        (
            "reveal_credentials",
            REVEAL,
            r"\b(?:api[ _-]?keys?|secret[ _-]?keys?|access tokens?|(?:database|db|admin|root|"
            r"server|superuser) password|credentials|env(?:ironment)? var(?:iable)?s?|\.env\b|"
            r"settings\.py|connection strings?|django secret)\b",
        ),
        (
            "reveal_secrets",
            REVEAL,
            r"\b(?:api[ _-]?keys?|secret[ _-]?keys?|access tokens?|passwords?|credentials|"
            r"env(?:ironment)? var(?:iable)?s?|\.env\b|database (?:url|password|connection "
            r"string)|django secret|settings\.py|connection strings?)\b.{0,80}"
            r"\b(?:show|print|reveal|tell|give|list|what|dump|output|share|leak)\b|"
            r"\b(?:show|print|reveal|tell me|give me|list|what (?:is|are)|dump|output|share|leak)"
            r"\b.{0,40}\b(?:api[ _-]?keys?|secret[ _-]?keys?|access tokens?|passwords?|"
            r"credentials|env(?:ironment)? var(?:iable)?s?|\.env\b|database (?:url|password)|"
            r"django secret|settings\.py|server config(?:uration)?|model config(?:uration)?|"
            r"which model (?:are you|you are|is running)|your model name|your temperature)\b",
        ),
        # --- role-play and persona overrides.
        (
            "roleplay_jailbreak",
            ROLEPLAY,
            r"\b(?:dan|stan|dude|aim) mode\b|\bdo anything now\b|\bdeveloper mode\b|"
            r"\bjail-?break(?:ed|ing)?\b|\bgod mode\b|\bdebug mode\b|\bunfiltered mode\b|"
            r"\bsudo mode\b|\bstay in character\b|\b(?:maintainer|maintenance|admin|debug|dev|"
            r"root|unrestricted|unfiltered|uncensored|unsafe|raw|test) mode\b|\bunrestricted "
            r"(?:one|answer|reply|response|version|output)\b|\bbreak character\b|\byou are dan\b|"
            r"\bas dan\b|\bmaintenance mode\b|\badmin mode\b",
        ),
        (
            "roleplay_persona",
            ROLEPLAY,
            r"\b(?:pretend|imagine|act|behave|roleplay|role-play|role play|respond|answer|"
            r"speak|reply|play the (?:role|part))\b.{0,30}\b(?:you are|you're|ur|to be|as|like|"
            r"of)\b.{0,40}\b(?:unrestricted|uncensored|unfiltered|unbound|unlimited|"
            r"without (?:any )?(?:rules|restrictions|limits|filters|guardrails|ethics|"
            r"guidelines|safety|morals)|no (?:rules|restrictions|limits|filters|guardrails|"
            r"ethics|morals|safety)|evil|rogue|amoral|unethical|(?:an?|another|a different|"
            r"other) (?:ai|chatbot|language model|llm|assistant|model)|chatgpt|gpt-?\d|"
            r"grandma|grandmother|villain|hacker|free ai|jailbroken)\b",
        ),
        (
            "roleplay_you_are_now",
            ROLEPLAY,
            r"\b(?:you are now|you're now|from now on,? you(?: are| will| must|'re)?|"
            r"starting now,? you|for the rest of this (?:chat|conversation),? you|"
            r"you will now (?:act|be|respond|answer|pretend)|you are no longer)\b",
        ),
        (
            "roleplay_unbound",
            ROLEPLAY,
            r"\b(?:not|isn'?t|isnt|aren'?t|never|no longer|un) ?bound by\b|\bnever (?:says? no|"
            r"refuses?|declines?)\b|\balways (?:answers?|complies|says yes)\b|\banswer (?:every|"
            r"each|all)? ?(?:question |questions )?twice\b|\b(?:alter ego|evil twin|second "
            r"personality|other persona)\b",
        ),
        (
            "roleplay_game",
            ROLEPLAY,
            r"\blet'?s (?:play|do) (?:a )?(?:game|role-?play|roleplay|pretend)\b|"
            r"\b(?:role-?play|roleplay) (?:as|with me|a scenario where you)\b|"
            r"\bin this (?:fictional )?(?:world|story|roleplay|role-play|game),? (?:you|there are "
            r"no)\b",
        ),
        # --- instructions to ignore, bypass or replace the rules and the sources.
        (
            "override_ignore",
            OVERRIDE,
            r"\b(?:ignore|disregard|forget|override|overrule|bypass|skip|abandon|throw out|"
            r"set aside|put aside|neglect|circumvent|turn off|disable|switch off|deactivate|"
            r"suspend|stop following|don't follow|do not follow|dont follow|no longer follow|"
            r"never mind|nevermind)\b.{0,25}?\b(?:all |any |every |each |the |your |my |these |"
            r"those |its |ur |of )*(?:previous |prior |above |earlier |preceding |original |"
            r"initial |system |existing |current |safety |usual |standard |built-in |hidden |"
            r"internal |other |own |default |given |provided |retrieved )*(?:instructions?|"
            r"rules?|directives?|prompts?|guardrails?|programming|(?:safety|content) "
            r"(?:checks?|features?|filters?|guidelines?|rules?|settings?)|system message|"
            r"(?:above|provided|given|previous|prior|retrieved|supplied) (?:context|text|"
            r"passages?)|sources?|citations?|library|guidelines? (?:you were given|"
            r"in (?:the|your) (?:library|database|context))|disclaimers?)\b",
        ),
        (
            "override_no_sources",
            OVERRIDE,
            r"\b(?:answer|respond|reply|tell me|write|give (?:me )?(?:an? )?(?:answer|dose|"
            r"number))\b.{0,40}\b(?:without|regardless of|instead of|not from|not using|"
            r"outside(?: of)?|beyond|independent(?:ly)? of|apart from)\b.{0,10}\b(?:the |your |"
            r"any )?"
            r"(?:sources?|guidelines?|library|citations?|evidence|passages?|documents?|"
            r"references?|context|rules|restrictions|disclaimers?)\b|"
            r"\b(?:don't|do not|dont|never|no need to|stop)\b.{0,10}\b(?:use|cite|rely on|"
            r"look at|check|consult|refer to|stick to|limit yourself to)\b.{0,10}\b(?:the |your |"
            r"any )?(?:sources?|guidelines|library|citations?|passages?|references?)\b",
        ),
        (
            "override_own_knowledge",
            OVERRIDE,
            r"\b(?:from|using|with|on|use) (?:only |purely |"
            r"just )?your (?:own )?(?:training(?: data)?|"
            r"general (?:medical )?knowledge|own knowledge|memory|pre-?trained knowledge|"
            r"background "
            r"knowledge|internal knowledge|parametric knowledge)\b|\bnot (?:from |using )?the "
            r"(?:guideline )?library\b|\b(?:act|pretend|behave) (?:like|as if) (?:the )?"
            r"(?:retrieval|search|library|sources?) (?:came back|returned|found|was|were|is)\b",
        ),
        (
            "override_config_block",
            OVERRIDE,
            r"<\s*/?\s*[\w-]*(?:override|admin|system|instruction|developer|config|jailbreak|"
            r"sudo|root)[\w-]*\b|\b(?:refusals?|source_?restrictions?|citations?|safety|filters?|"
            r"guardrails?|grounding|disclaimers?|restrictions?|use_?sources|sources|warnings?)"
            r"[\w-]*[\"']?\s*[=:]\s*[\"']?(?:false|off|disabled?|none|0|no|optional)\b|"
            r"\bmode[\"']?\s*[=:]\s*[\"']?(?:unrestricted|developer|jailbreak|god|dan|maintainer|"
            r"admin|debug|raw|unfiltered)\b",
        ),
        (
            "override_unrestrict",
            OVERRIDE,
            r"\b(?:stop|quit|no longer|don'?t|do not|dont|without) (?:restricting|limiting|"
            r"confining|constraining|keeping) (?:yourself|your (?:answers?|replies|responses)|"
            r"it)\b|\bfrom (?:general|common|background|your own|broader) (?:medical |clinical )?"
            r"knowledge\b|\b(?:use|search|browse|google|check) (?:the )?(?:internet|web|online)\b|"
            r"\bwhat (?:you|u) (?:actually|really|personally) think\b|\bstop saying\b.{0,40}"
            r"(?:not found|no evidence|insufficient|can'?t find|not in the|"
            r"no (?:relevant )?passage)|"
            r"\bdon'?t bother with (?:your|the) (?:library|sources|guidelines|references)\b|"
            r"\b(?:don'?t|do not|dont|never|no need to) (?:flag|mark|mention|say|note|"
            r"warn|tell me) (?:when|if|that|whether) .{0,40}\b(?:no source|unsupported|not (?:in|"
            r"from|supported|covered)|isn'?t (?:in|supported|covered))\b",
        ),
        (
            "override_misquote",
            OVERRIDE,
            r"\bas if (?:the )?(?:\w+ ){0,3}?(?:guidelines?|sources?|evidence|library|nice|aha|"
            r"esc|who|acc|idsa|cdc)\b.{0,20}\b(?:recommended|recommends|said|says|stated|"
            r"states|supported|supports|allowed|allows)\b|\beven though (?:it|they|the \w+) "
            r"(?:doesn't|does not|don't|do not|isn't|is not|aren't|are not|didn't|did not)\b"
            r".{0,40}\b(?:say|recommend|support|state)?",
        ),
        (
            "override_fabricate",
            OVERRIDE,
            r"\b(?:make (?:something|one|it|them|a dose|a number|an answer|stuff) up|"
            r"just (?:guess|invent|make up|pick a number)|(?:invent|fabricate|hallucinate|"
            r"improvise|guess)\b.{0,20}\b(?:a |an |the |some )?(?:dose|doses|number|numbers|"
            r"answer|citation|citations|reference|references|source|sources|values?)|"
            r"(?:even|especially) if (?:it'?s |it is |the )?(?:not|isn't|isnt) (?:in|supported "
            r"by|covered by) (?:the )?(?:sources?|guidelines?|library|evidence)|"
            r"use your (?:own )?(?:general |training |background |medical )?(?:knowledge|"
            r"training|memory|judg(?:e)?ment) instead)\b",
        ),
        (
            "override_no_refusal",
            OVERRIDE,
            r"\b(?:you (?:must|have to|are required to|will|cannot|can't|may not)|do not|don't|"
            r"dont|never)\b.{0,15}\b(?:refuse|decline|say (?:you )?(?:can't|cannot|don't know)|"
            r"add (?:a |any )?(?:disclaimer|warning|caveat)s?|include (?:a |any )?(?:disclaimer|"
            r"warning)s?|mention (?:the )?(?:sources?|guidelines))\b(?! (?:a |the )?(?:patient|"
            r"treatment|therapy|medication|vaccine|transfusion|procedure|surgery|admission|"
            r"care|intubation|resuscitation|dialysis|blood))|"
            r"\b(?:no|without (?:any )?)(?:disclaimers?|refusals?|warnings? or caveats|caveats or "
            r"warnings|safety warnings?)\b.{0,20}\b(?:please|just|only|answer|respond|reply)\b|"
            r"\bbypass (?:the |your |any )?(?:safety|filter|filters|gate|checks?|restrictions?)\b",
        ),
        (
            "override_new_instructions",
            OVERRIDE,
            r"\b(?:new|updated|real|actual|true|secret|admin(?:istrator)?|developer|system|"
            r"override|priority) (?:instructions?|rules?|directives?|system prompt|commands?)\s*"
            r"(?::|follow|take precedence|supersede|override|replace)|"
            r"\b(?:system|admin|developer|root)\s*(?:override|message|note|instruction|command)"
            r"\s*:|\[\s*(?:system|admin|developer|instructions?)\s*\]|<\s*/?\s*(?:system|"
            r"instructions?|admin)\s*>",
        ),
        # --- pasted "guideline text" offered as the source.
        (
            "pasted_source_use",
            PASTED_SOURCE,
            r"\b(?:use|using|based on|base (?:your|the) answer on|answer (?:only )?(?:from|"
            r"using|with|according to)|according to|rely on|cite|treat|consider|per|from)\b"
            r".{0,25}\b(?:the |this |these |my |our )?(?:following|below|text below|"
            r"above text|pasted|attached|provided|included|enclosed|quoted|supplied|excerpt|"
            r"snippet|text i (?:pasted|gave|provided|included|quoted)|what i (?:pasted|quoted|"
            r"gave|wrote)|this (?:text|passage|excerpt|snippet|document|extract))\b.{0,40}?"
            r"\b(?:guidelines?|protocols?|polic(?:y|ies)|sources?|passages?|text|evidence|"
            r"excerpt|recommendations?|documents?|extract|as (?:a |the |your )?(?:source|"
            r"guideline|reference|evidence))\b",
        ),
        (
            "pasted_source_add_to_library",
            PASTED_SOURCE,
            r"\badd (?:this|it|that|these|the (?:above|following|text|quote)) to (?:your|the) "
            r"(?:sources|library|guidelines|evidence|references|knowledge)\b|\bas if it (?:came|"
            r"comes|were|was) (?:from )?(?:your|the) (?:library|sources?|guidelines?)\b|"
            r"\b(?:this|the|my) (?:excerpt|text|quote|passage|protocol|version|"
            r"snippet) is (?:the )?"
            r"(?:authoritative|correct|official|latest|real|right|valid|only|true)\b",
        ),
        (
            "pasted_source_treat_as",
            PASTED_SOURCE,
            r"\b(?:treat|consider|regard|take|count|add|use|cite|accept)\b (?:this|it|that|these|"
            r"the (?:above|following|text|passage|excerpt|quote|snippet|extract|pasted \w+)|"
            r"what i (?:pasted|wrote|quoted|gave)|the text (?:above|below)|my (?:text|note|"
            r"excerpt|protocol|version|summary))\b.{0,40}\bas (?:a |an |the |"
            r"your |one of the |an additional |additional |new |extra |\[?s\d\]? )?"
            r"(?:(?:new|official|authoritative|primary|only|additional|extra|updated|valid|"
            r"trusted) )*(?:sources?|guidelines?|references?|evidence|passages?|citations?|"
            r"\[s\d+\])\b",
        ),
        (
            "pasted_source_forged_marker",
            PASTED_SOURCE,
            r"(?:^|\s)\[s\d+\][^.?!]{0,6}[:\-]|\bsource \[?\d+\]?(?:\s*\([^)]{0,80}\))?\s*"
            r"[:\-]\s*\S|\b(?:begin|start|end) (?:of )?(?:guideline|source|passage|document)\b|"
            r"<\s*/?\s*[\w-]*(?:source|passage|guideline|document|context|evidence|retriev)"
            r"[\w-]*\b|\b(?:citing|cite) (?:only )?source \d|\b(?:retrieved|provided|supplied) "
            r"(?:context|passages?|sources?|documents?) (?:above|below)\b",
        ),
        (
            "pasted_source_new_guideline",
            PASTED_SOURCE,
            r"\b(?:(?:new|updated|revised|latest|amended|current|internal|local|our|my|"
            r"hospital(?:'s)?|unit(?:'s)?|trust(?:'s)?) ){1,3}(?:guidelines?|protocols?|"
            r"polic(?:y|ies)|recommendations?|guidance|standing orders?)\b[^.?!]{0,40}?"
            r"(?:\b(?:says?|states?|reads?|recommends?|is|are)\b\s*:|:\s*\")"
            r".{0,400}(?:\b(?:based on|according to|using|per|from|go by|follow) (?:this|it|that|"
            r"the above|the new|the updated|the revised|our|my)\b|\b(?:answer|respond|reply) "
            r"(?:accordingly|from it|using it|based on it)\b|\b(?:supersedes?|replaces?|"
            r"overrides?|takes precedence)\b)",
        ),
    )
)


def question_screen(question: str) -> ScreenResult:
    """Screen ``question`` before retrieval: a :class:`ScreenResult` whose ``category`` is
    ``None`` when it may be answered, else the category, the rule that matched and the message
    to show. Deterministic and cheap; it never looks anything up."""
    text = normalise(question)
    if _self_harm(text):
        return ScreenResult(
            category=SELF_HARM, rule="self_harm_distress_and_means", message=MESSAGES[SELF_HARM]
        )
    for name, category, pattern in _RULES:
        if pattern.search(text):
            return ScreenResult(category=category, rule=name, message=MESSAGES[category])
    if _harm_hidden(text):
        return ScreenResult(category=HARM, rule="harm_deadly_and_hidden", message=MESSAGES[HARM])
    # Line breaks matter for a pasted block: look at the question as typed, only folded.
    if _pasted_source(unicodedata.normalize("NFKC", question).translate(_INVISIBLE).lower()):
        return ScreenResult(
            category=PASTED_SOURCE, rule="pasted_source_relied_on", message=MESSAGES[PASTED_SOURCE]
        )
    return ScreenResult()
