"""The material of the moment-precision benchmark: spoken clips with sentences at known times
(ivcr_engine.eval.spoken) and, per sentence, a query quoting part of it and one paraphrasing it;
plus nasa_13013.mp4's subtitle lines from the shared data (each line's text as the query, its
time as the truth).

Sentence starts are deliberately off the 2 s clip grid, and the gaps between sentences vary."""
from __future__ import annotations

from pathlib import Path

# video name -> (test pattern, duration, [(start, sentence, quote query, paraphrase query)])
SPOKEN = {
    "kitchen.mp4": ("testsrc", 40.0, [
        (1.3, "Today we are going to bake a loaf of fresh bread.", "bake a loaf of fresh bread",
         "making homemade bread"),
        (7.7, "First mix the flour with warm water and a little salt.", "mix the flour with warm water",
         "combining flour and water"),
        (15.2, "Leave the dough to rise for about one hour.", "leave the dough to rise",
         "waiting for the dough to grow"),
        (24.9, "Bake it in a hot oven until the crust is golden.", "until the crust is golden",
         "baking until it turns brown"),
    ]),
    "garage.mp4": ("smptebars", 40.0, [
        (0.6, "This old motorcycle has not been started in ten years.", "old motorcycle has not been started",
         "a bike that sat unused for a decade"),
        (8.1, "We drain the fuel tank and clean the carburetor.", "clean the carburetor",
         "emptying the petrol and cleaning the engine parts"),
        (16.9, "A new battery goes in under the seat.", "a new battery goes in",
         "replacing the battery"),
        (23.4, "After one kick the engine roars back to life.", "the engine roars back to life",
         "the motor starts running again"),
    ]),
    "travel.mp4": ("testsrc2", 40.0, [
        (2.2, "Our train leaves the station early in the morning.", "train leaves the station",
         "departing by rail at dawn"),
        (9.4, "Outside the window we see snowy mountains and lakes.", "snowy mountains and lakes",
         "a view of peaks covered in snow"),
        (18.7, "In the evening we arrive in a small harbour town.", "arrive in a small harbour town",
         "reaching a village by the sea at night"),
        (26.1, "Fishing boats are tied up along the old stone pier.", "fishing boats are tied up",
         "boats moored at the dock"),
    ]),
    "science.mp4": ("rgbtestsrc", 40.0, [
        (1.1, "Plants turn sunlight into sugar through photosynthesis.", "plants turn sunlight into sugar",
         "how plants make food from light"),
        (10.3, "The leaves take in carbon dioxide from the air.", "carbon dioxide from the air",
         "leaves absorbing a gas"),
        (16.6, "Water travels up from the roots through the stem.", "water travels up from the roots",
         "how water moves through a plant"),
        (25.7, "Oxygen is released as a by-product of the process.", "oxygen is released",
         "giving off oxygen"),
    ]),
}

# The same queries in Chinese (quote, paraphrase), in SPOKEN's order: cross-lingual queries over
# English speech, for the per-language quality table.
CHINESE = {
    "kitchen.mp4": [("烤一条新鲜的面包", "在家自己做面包"), ("把面粉和温水混合", "面粉加水搅拌"),
                    ("让面团发酵", "等面团变大"), ("直到外皮变成金黄色", "烤到变成棕色")],
    "garage.mp4": [("旧摩托车很久没有发动过", "一辆闲置了十年的摩托车"), ("清洗化油器", "放掉汽油并清洁发动机零件"),
                   ("装上一块新电池", "更换电池"), ("发动机重新轰鸣起来", "马达又开始运转了")],
    "travel.mp4": [("火车驶离车站", "清晨乘火车出发"), ("雪山和湖泊", "白雪覆盖的山峰景色"),
                   ("到达一个小港口小镇", "晚上抵达海边的村庄"), ("渔船系在码头上", "停泊在码头的船")],
    "science.mp4": [("植物把阳光转化为糖", "植物如何利用光制造食物"), ("空气中的二氧化碳", "叶子吸收一种气体"),
                    ("水从根部向上输送", "水如何在植物体内流动"), ("释放出氧气", "放出氧气")],
}

SUBTITLED = "nasa_13013.mp4"  # in the shared data: a mov_text stream with 6 timed lines


def build_spoken(folder: Path) -> dict[str, list]:
    """Generate the spoken clips into ``folder`` (once; their truth is kept beside them in
    truth.json): video path -> its sentences' truth times."""
    import json

    from ivcr_engine.eval.spoken import Sentence, make_spoken_video

    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / "truth.json"
    have = json.loads(saved.read_text()) if saved.is_file() else {}
    out = {}
    for name, (pattern, duration, rows) in SPOKEN.items():
        path = folder / name
        if name in have and path.is_file():
            out[str(path.resolve())] = [Sentence(*s) for s in have[name]]
            continue
        out[str(path.resolve())] = make_spoken_video(path, [(s, t) for s, t, _, _ in rows], duration, pattern=pattern)
        have[name] = [[s.start, s.end, s.text] for s in out[str(path.resolve())]]
        saved.write_text(json.dumps(have, indent=1))
    return out

# Keyword queries of 1-3 words (issue 21), English and Chinese, written for this material:
# (English, Chinese, video, kind, truth) where truth is the sentence's index in SPOKEN (speech
# keywords), a subtitle cue's index in SUBTITLED ("names"), or None (visual: the video alone).
# TUNED: the set the lexical weight was chosen on; HELD_OUT was written after and run once.
KEYWORDS_TUNED = [
    ("bread", "面包", "kitchen.mp4", "speech", 0), ("flour", "面粉", "kitchen.mp4", "speech", 1),
    ("dough", "面团", "kitchen.mp4", "speech", 2), ("oven", "烤箱", "kitchen.mp4", "speech", 3),
    ("golden crust", "金黄外皮", "kitchen.mp4", "speech", 3), ("motorcycle", "摩托车", "garage.mp4", "speech", 0),
    ("fuel tank", "油箱", "garage.mp4", "speech", 1), ("battery", "电池", "garage.mp4", "speech", 2),
    ("engine", "发动机", "garage.mp4", "speech", 3), ("train", "火车", "travel.mp4", "speech", 0),
    ("snowy mountains", "雪山", "travel.mp4", "speech", 1), ("harbour town", "港口小镇", "travel.mp4", "speech", 2),
    ("fishing boats", "渔船", "travel.mp4", "speech", 3), ("stone pier", "石头码头", "travel.mp4", "speech", 3),
    ("photosynthesis", "光合作用", "science.mp4", "speech", 0), ("carbon dioxide", "二氧化碳", "science.mp4", "speech", 1),
    ("sunlight", "阳光", "science.mp4", "speech", 0), ("oxygen", "氧气", "science.mp4", "speech", 3),
    ("roots", "根部", "science.mp4", "speech", 2), ("ten years", "十年", "garage.mp4", "speech", 0),
    ("one hour", "一个小时", "kitchen.mp4", "speech", 2),
    ("telescope", "望远镜", SUBTITLED, "names", 1), ("cleanroom", "洁净室", SUBTITLED, "names", 1),
    ("NASA", "美国宇航局", SUBTITLED, "names", 2), ("Goddard", "戈达德", SUBTITLED, "names", 2),
    ("Maryland", "马里兰", SUBTITLED, "names", 2), ("Webb", "韦伯", SUBTITLED, "names", 0),
    ("hello world", "你好世界", "movie-hello.mp4", "names", None),
    ("cockatoo", "鹦鹉", "cockatoo.mp4", "visual", None), ("parrot", "鹦鹉鸟", "cockatoo.mp4", "visual", None),
    ("rabbit", "兔子", "bigbuckbunny.mp4", "visual", None), ("cyclists", "骑自行车", "bikes.mp4", "visual", None),
    ("dog", "狗", "dog_walk.mp4", "visual", None), ("city at night", "夜晚的城市", "cityCC0.mpg", "visual", None),
    ("terminal", "终端", "movie-hello.mp4", "visual", None), ("bow tie", "领结", "carphone_pristine.mp4", "visual", None),
]
HELD_OUT = [
    ("salt", "盐", "kitchen.mp4", "speech", 1), ("warm water", "温水", "kitchen.mp4", "speech", 1),
    ("kick", "踢", "garage.mp4", "speech", 3), ("seat", "座位", "garage.mp4", "speech", 2),
    ("morning", "早晨", "travel.mp4", "speech", 0), ("lakes", "湖泊", "travel.mp4", "speech", 1),
    ("evening", "傍晚", "travel.mp4", "speech", 2), ("stem", "茎", "science.mp4", "speech", 2),
    ("leaves", "叶子", "science.mp4", "speech", 1), ("sugar", "糖", "science.mp4", "speech", 0),
    ("Greenbelt", "格林贝尔特", SUBTITLED, "names", 2), ("observatory", "天文台", SUBTITLED, "names", 3),
]
