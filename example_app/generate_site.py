"""Generate the sample website that the local tasks crawl and audit.

The site is a fictional gardening shop and blog, written to ``sample_site/``
next to this file. The output is deterministic: the same seed gives the same
bytes, so the committed folder can be checked against a fresh run
(``python -m example_app.generate_site --check``).

Besides ordinary pages, the site contains the defects that the audit tasks
look for, at known places. Some pages have no ``<title>`` or no meta
description, some share a title, and some are thin, with very little text.
Some links and images point to files that do not exist, and some images
have no ``alt`` text.
"""

from __future__ import annotations

import argparse
import html
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .site_server import SITE_DIR

SEED = 20240611

SITE_NAME = "Greenfold Gardens"

TOPICS = [
    "tomatoes",
    "roses",
    "compost",
    "herbs",
    "lavender",
    "seedlings",
    "raised beds",
    "mulch",
    "pruning",
    "watering",
    "soil health",
    "pollinators",
    "potatoes",
    "fruit trees",
    "houseplants",
    "succulents",
    "garlic",
    "strawberries",
    "hedges",
    "lawns",
    "greenhouses",
    "bulbs",
    "ferns",
    "climbing plants",
]

ADJECTIVES = [
    "simple",
    "practical",
    "seasonal",
    "thrifty",
    "organic",
    "quick",
    "beginner",
    "advanced",
    "small-space",
    "low-maintenance",
    "drought-tolerant",
    "reliable",
]

HEADLINE_FORMS = [
    "A {adj} guide to {topic}",
    "{Topic} for {adj} gardeners",
    "How to grow {topic} the {adj} way",
    "Ten {adj} ideas for {topic}",
    "What nobody tells you about {topic}",
    "{Topic}: a {adj} approach",
    "Getting started with {topic}",
    "Common mistakes with {topic}",
]

SECTION_HEADINGS = [
    "Why it matters",
    "Choosing a spot",
    "Preparing the soil",
    "Planting step by step",
    "Watering and feeding",
    "Dealing with pests",
    "Harvest and storage",
    "Tools you will need",
    "Through the seasons",
    "Questions from readers",
]

SUBJECTS = [
    "Most gardeners",
    "A healthy plant",
    "The root system",
    "Well drained soil",
    "A layer of mulch",
    "Morning sunlight",
    "Regular pruning",
    "A simple trellis",
    "Homemade compost",
    "Rainwater from a barrel",
    "A patient beginner",
    "The first frost",
]

VERBS = [
    "benefits from",
    "depends on",
    "improves",
    "protects",
    "encourages",
    "reduces the need for",
    "makes room for",
    "prepares the ground for",
    "rewards",
    "keeps away",
]

OBJECTS = [
    "steady growth through the summer",
    "deeper roots and stronger stems",
    "fewer weeds in the borders",
    "a generous harvest in autumn",
    "the beneficial insects that visit every bed",
    "moisture during long dry spells",
    "a tidy shape that lets air move between the leaves",
    "better flavour in every fruit",
    "healthy microbes in the topsoil",
    "young seedlings on cold nights",
]

CLAUSES = [
    "especially in clay soil",
    "if you start early in spring",
    "when the weather turns warm",
    "as long as you check it every week",
    "even on a small balcony",
    "without any expensive equipment",
    "because nutrients stay where the plant can reach them",
    "which saves time later in the year",
]

PRODUCT_KINDS = [
    "trowel",
    "watering can",
    "seed tray",
    "pruning shears",
    "compost bin",
    "garden fork",
    "hose reel",
    "kneeling pad",
    "plant labels",
    "cold frame",
    "rain barrel",
    "soil tester",
]

IMAGE_FILES = ["leaf.svg", "flower.svg", "pot.svg", "sun.svg", "tools.svg", "bed.svg"]

ARTICLE_COUNT = 210
GUIDE_COUNT = 36
PRODUCT_COUNT = 60
ARTICLES_PER_LISTING = 15


@dataclass
class Page:
    """One page of the generated site before it is rendered to HTML."""

    path: str
    title: str | None
    description: str | None
    heading: str
    sections: list[tuple[str, list[str]]]
    images: list[tuple[str, str | None]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    breadcrumb: list[tuple[str, str]] = field(default_factory=list)
    heading_level: int = 1
    section_level: int = 2


def make_sentence(rng: random.Random, topic: str) -> str:
    """Build one sentence about ``topic`` from the phrase lists."""
    form = rng.randrange(4)
    if form == 0:
        text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
    elif form == 1:
        text = f"Growing {topic} {rng.choice(VERBS)} {rng.choice(OBJECTS)}, {rng.choice(CLAUSES)}"
    elif form == 2:
        subject = rng.choice(SUBJECTS).lower()
        text = f"With {topic}, {subject} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
    else:
        text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {topic} {rng.choice(CLAUSES)}"
    return text + "."


def make_paragraph(rng: random.Random, topic: str, sentences: int) -> str:
    return " ".join(make_sentence(rng, topic) for _ in range(sentences))


def make_headline(rng: random.Random, topic: str) -> str:
    form = rng.choice(HEADLINE_FORMS)
    adjective = rng.choice(ADJECTIVES)
    headline = form.format(adj=adjective, topic=topic, Topic=topic.capitalize())
    if adjective[0] in "aeiou":
        headline = headline.replace(f"a {adjective}", f"an {adjective}")
    return headline[0].upper() + headline[1:]


def slugify(text: str) -> str:
    dashed = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(part for part in dashed.split("-") if part)


def make_sections(rng: random.Random, topic: str, count: int) -> list[tuple[str, list[str]]]:
    headings = rng.sample(SECTION_HEADINGS, count)
    return [
        (heading, [make_paragraph(rng, topic, rng.randint(3, 6)) for _ in range(rng.randint(1, 3))])
        for heading in headings
    ]


def build_pages(rng: random.Random) -> list[Page]:
    """Plan every page of the site, defects included.

    The defects are placed by index so that every kind appears several
    times, and the random choices only vary the wording.
    """
    articles: list[Page] = []
    used_slugs: set[str] = set()
    for index in range(ARTICLE_COUNT):
        topic = TOPICS[index % len(TOPICS)]
        headline = make_headline(rng, topic)
        while slugify(headline) in used_slugs:
            headline = make_headline(rng, topic)
        slug = slugify(headline)
        used_slugs.add(slug)
        thin = index % 23 == 7
        sections = (
            [("In short", [make_sentence(rng, topic)])]
            if thin
            else make_sections(rng, topic, rng.randint(3, 5))
        )
        images: list[tuple[str, str | None]] = [
            (f"/images/{rng.choice(IMAGE_FILES)}", f"Illustration for {topic}"),
        ]
        if index % 17 == 3:
            images.append((f"/images/photo-{index}.jpg", f"Photo of {topic}"))
        if index % 11 == 5:
            images.append((f"/images/{rng.choice(IMAGE_FILES)}", None))
        articles.append(
            Page(
                path=f"/blog/{slug}.html",
                title=f"{headline} | {SITE_NAME}",
                description=(
                    f"{headline}. Advice on {topic} from the {SITE_NAME} team, "
                    f"with {rng.choice(ADJECTIVES)} tips you can use this season."
                ),
                heading=headline,
                sections=sections,
                images=images,
                breadcrumb=[("/index.html", "Home"), ("/blog/index.html", "Blog")],
            )
        )

    # Defects: missing titles, missing descriptions and duplicate titles.
    for index in range(4, ARTICLE_COUNT, 29):
        articles[index].title = None
    for index in range(9, ARTICLE_COUNT, 19):
        articles[index].description = None
    for index in range(13, ARTICLE_COUNT, 31):
        articles[index].title = articles[index - 10].title
    # Defects that only the smart audit reports: no <h1>, or several.
    for index in range(30, ARTICLE_COUNT, 60):
        articles[index].heading_level = 2

    # Related reading and the odd link to a page that was never written.
    for index, article in enumerate(articles):
        related = rng.sample([a for a in articles if a is not article], 5)
        article.links.extend((other.path, other.heading) for other in related)
        if index % 13 == 2:
            article.links.append((f"/blog/draft-{index}.html", "A draft we never published"))
        if index % 37 == 20:
            article.links.append(("/blog/seasonal-calendar.html", "Our seasonal calendar"))

    guides: list[Page] = []
    for index in range(GUIDE_COUNT):
        topic = TOPICS[(index * 5) % len(TOPICS)]
        heading = f"The complete guide to {topic}" + ("" if index < len(TOPICS) else " (part 2)")
        guide = Page(
            path=f"/guides/{slugify(heading)}.html",
            title=f"{heading} | {SITE_NAME}",
            description=f"Everything about {topic} in one place: planning, planting and care.",
            heading=heading,
            sections=make_sections(rng, topic, 6),
            images=[(f"/images/{rng.choice(IMAGE_FILES)}", f"Diagram for {topic}")],
            breadcrumb=[("/index.html", "Home"), ("/guides/index.html", "Guides")],
        )
        guide.links.extend((article.path, article.heading) for article in rng.sample(articles, 8))
        if index % 9 == 4:
            guide.links.append((f"/guides/old-{slugify(topic)}.html", f"Older notes on {topic}"))
        guides.append(guide)
    guides[3].description = None
    guides[17].title = guides[16].title
    guides[21].section_level = 1

    products: list[Page] = []
    for index in range(PRODUCT_COUNT):
        kind = PRODUCT_KINDS[index % len(PRODUCT_KINDS)]
        model = ["Classic", "Pro", "Compact", "Heritage", "Eco"][index // len(PRODUCT_KINDS)]
        heading = f"{model} {kind}"
        thin = index % 7 == 6
        sections = (
            [("Details", [f"The {model.lower()} {kind}. In stock."])]
            if thin
            else [
                ("Details", [make_paragraph(rng, kind, 5)]),
                ("Care", [make_paragraph(rng, kind, 3)]),
            ]
        )
        product = Page(
            path=f"/products/{slugify(heading)}.html",
            title=f"{heading} | {SITE_NAME} shop",
            description=f"Buy the {model.lower()} {kind} from {SITE_NAME}.",
            heading=heading,
            sections=sections,
            images=[(f"/images/{rng.choice(IMAGE_FILES)}", heading)],
            breadcrumb=[("/index.html", "Home"), ("/products/index.html", "Shop")],
        )
        product.links.extend((article.path, article.heading) for article in rng.sample(articles, 2))
        products.append(product)
    for index in range(5, PRODUCT_COUNT, 12):
        products[index].description = None
    for index in range(8, PRODUCT_COUNT, 15):
        products[index].title = f"Shop | {SITE_NAME}"

    listings: list[Page] = []
    listing_count = (ARTICLE_COUNT + ARTICLES_PER_LISTING - 1) // ARTICLES_PER_LISTING
    for number in range(1, listing_count + 1):
        start = (number - 1) * ARTICLES_PER_LISTING
        chunk = articles[start : start + ARTICLES_PER_LISTING]
        path = "/blog/index.html" if number == 1 else f"/blog/page-{number}.html"
        listing = Page(
            path=path,
            title=f"Blog, page {number} | {SITE_NAME}",
            description=f"Articles from the {SITE_NAME} blog, page {number} of {listing_count}.",
            heading="From the blog" if number == 1 else f"From the blog, page {number}",
            sections=[
                (
                    "Latest articles",
                    [
                        f"Articles {start + 1} to {start + len(chunk)} of {ARTICLE_COUNT}.",
                        make_paragraph(rng, "gardening", 3),
                    ],
                )
            ],
            breadcrumb=[("/index.html", "Home")],
        )
        listing.links.extend((article.path, article.heading) for article in chunk)
        if number > 1:
            previous = "/blog/index.html" if number == 2 else f"/blog/page-{number - 1}.html"
            listing.links.append((previous, "Newer articles"))
        if number < listing_count:
            listing.links.append((f"/blog/page-{number + 1}.html", "Older articles"))
        listings.append(listing)

    guide_index = Page(
        path="/guides/index.html",
        title=f"Guides | {SITE_NAME}",
        description="Long-form guides to growing, planting and caring for your garden.",
        heading="Guides",
        sections=[("All guides", [make_paragraph(rng, "gardening", 2)])],
        links=[(guide.path, guide.heading) for guide in guides],
        breadcrumb=[("/index.html", "Home")],
    )
    shop_index = Page(
        path="/products/index.html",
        title=f"Shop | {SITE_NAME}",
        description="Tools and supplies for gardeners, tested by our team.",
        heading="Shop",
        sections=[("Everything in the shop", [make_paragraph(rng, "tools", 2)])],
        links=[(product.path, product.heading) for product in products],
        breadcrumb=[("/index.html", "Home")],
    )
    home = Page(
        path="/index.html",
        title=f"{SITE_NAME}: advice and tools for home gardeners",
        description="Guides, articles and tools for growing food and flowers at home.",
        heading=SITE_NAME,
        sections=[
            ("Welcome", [make_paragraph(rng, "gardening", 4)]),
            ("This season", [make_paragraph(rng, "seedlings", 3)]),
        ],
        images=[("/images/sun.svg", "The sun over a vegetable garden")],
        links=[(article.path, article.heading) for article in articles[:6]]
        + [(guide.path, guide.heading) for guide in guides[:4]],
    )
    about = Page(
        path="/about.html",
        title=f"About us | {SITE_NAME}",
        description=f"Who writes {SITE_NAME} and why.",
        heading="About us",
        sections=[("Our story", [make_paragraph(rng, "gardening", 5) for _ in range(2)])],
        images=[("/images/team.jpg", "The team in the greenhouse")],
        # External links: recorded by the crawler, never fetched.
        links=[
            ("https://example.com/seed-exchange", "The seed exchange we belong to"),
            ("https://example.org/allotments", "Allotment association"),
        ],
        breadcrumb=[("/index.html", "Home")],
    )
    contact = Page(
        path="/contact.html",
        title=None,
        description=None,
        heading="Contact",
        sections=[("Write to us", ["Send us a letter."])],
        breadcrumb=[("/index.html", "Home")],
    )
    legal = [
        Page(
            path=f"/{name.lower()}.html",
            title=f"{name} | {SITE_NAME}",
            description=None if name == "Terms" else f"The {name.lower()} of {SITE_NAME}.",
            heading=name,
            sections=[(name, [make_paragraph(rng, "this website", 5) for _ in range(2)])],
            breadcrumb=[("/index.html", "Home")],
        )
        for name in ("Privacy", "Terms")
    ]
    return [
        home,
        about,
        contact,
        *legal,
        guide_index,
        shop_index,
        *listings,
        *articles,
        *guides,
        *products,
    ]


NAVIGATION = [
    ("/index.html", "Home"),
    ("/blog/index.html", "Blog"),
    ("/guides/index.html", "Guides"),
    ("/products/index.html", "Shop"),
    ("/about.html", "About"),
    ("/contact.html", "Contact"),
]

FOOTER = [
    ("/privacy.html", "Privacy"),
    ("/terms.html", "Terms"),
    ("/sitemap.html", "Sitemap"),
]


def relative_href(from_path: str, to_path: str) -> str:
    """Return a link from one site path to another.

    Pages in subfolders link with ``../`` so the site also works when it is
    served below a prefix, and the crawler has relative URLs to resolve.
    """
    if to_path.startswith(("http://", "https://")):
        return to_path
    depth = from_path.count("/") - 1
    return "../" * depth + to_path.lstrip("/")


def render_page(page: Page) -> str:
    """Render one page as a complete HTML document."""
    escape = html.escape
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">']
    if page.title is not None:
        lines.append(f"<title>{escape(page.title)}</title>")
    if page.description is not None:
        lines.append(f'<meta name="description" content="{escape(page.description)}">')
    lines.append('<meta name="viewport" content="width=device-width, initial-scale=1">')
    lines.append(f'<link rel="stylesheet" href="{relative_href(page.path, "/style.css")}">')

    lines += ["</head>", "<body>", "<header>", "<nav>"]
    lines += [
        f'<a href="{relative_href(page.path, path)}">{escape(label)}</a>'
        for path, label in NAVIGATION
    ]
    lines += ["</nav>", "</header>", "<main>"]

    if page.breadcrumb:
        crumbs = " / ".join(
            f'<a href="{relative_href(page.path, path)}">{escape(label)}</a>'
            for path, label in page.breadcrumb
        )
        lines.append(f'<p class="breadcrumb">{crumbs}</p>')

    lines.append(f"<h{page.heading_level}>{escape(page.heading)}</h{page.heading_level}>")
    for src, alt in page.images:
        alt_attribute = "" if alt is None else f' alt="{escape(alt)}"'
        lines.append(f'<img src="{relative_href(page.path, src)}"{alt_attribute}>')
    for heading, paragraphs in page.sections:
        lines.append(f"<h{page.section_level}>{escape(heading)}</h{page.section_level}>")
        lines += [f"<p>{escape(paragraph)}</p>" for paragraph in paragraphs]
    if page.links:
        lines += ["<h2>Read next</h2>", "<ul>"]
        lines += [
            f'<li><a href="{relative_href(page.path, path)}">{escape(label)}</a></li>'
            for path, label in page.links
        ]
        lines.append("</ul>")

    lines += ["</main>", "<footer>"]
    lines += [
        f'<a href="{relative_href(page.path, path)}">{escape(label)}</a>' for path, label in FOOTER
    ]
    lines += ["</footer>", "</body>", "</html>", ""]
    return "\n".join(lines)


def render_sitemap(pages: list[Page]) -> str:
    """Render the HTML sitemap, which links to every page and to nothing missing."""
    sitemap = Page(
        path="/sitemap.html",
        title=f"Sitemap | {SITE_NAME}",
        description=f"Every page of {SITE_NAME}.",
        heading="Sitemap",
        sections=[],
        links=[(page.path, page.heading) for page in pages],
        breadcrumb=[("/index.html", "Home")],
    )
    return render_page(sitemap)


STYLE = """\
body { font-family: Georgia, serif; max-width: 46rem; margin: 0 auto; padding: 1rem; }
body { line-height: 1.5; }
nav a, footer a { margin-right: 0.75rem; }
img { width: 4rem; height: 4rem; float: right; margin: 0 0 1rem 1rem; }
.breadcrumb { font-size: 0.9rem; }
"""

IMAGE_COLORS = {
    "leaf.svg": "#3a7d44",
    "flower.svg": "#c2185b",
    "pot.svg": "#a0522d",
    "sun.svg": "#f4b400",
    "tools.svg": "#607d8b",
    "bed.svg": "#795548",
}


def render_image(color: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<circle cx="32" cy="32" r="28" fill="{color}"/></svg>\n'
    )


def render_site() -> dict[str, str]:
    """Render the whole site and return its files by relative path."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible text, not security
    pages = build_pages(rng)
    files = {page.path.lstrip("/"): render_page(page) for page in pages}
    files["sitemap.html"] = render_sitemap(pages)
    files["style.css"] = STYLE
    for name, color in IMAGE_COLORS.items():
        files[f"images/{name}"] = render_image(color)
    return files


def write_site(target: Path) -> int:
    """Replace ``target`` with a freshly rendered site and return the number of files."""
    files = render_site()
    if target.exists():
        shutil.rmtree(target)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return len(files)


def find_differences(target: Path) -> list[str]:
    """Return the relative paths where ``target`` differs from a fresh render."""
    files = render_site()
    on_disk = {path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file()}
    differences = sorted(on_disk - files.keys())
    for relative, text in files.items():
        path = target / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            differences.append(relative)
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the sample website of the example app.")
    parser.add_argument(
        "--output", type=Path, default=SITE_DIR, help="folder to write (default: %(default)s)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit with status 1 if the folder differs from a fresh render",
    )
    args = parser.parse_args(argv)
    if args.check:
        differences = find_differences(args.output)
        for relative in differences:
            print(f"differs: {relative}")
        return 1 if differences else 0
    count = write_site(args.output)
    print(f"Wrote {count} files to {args.output}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
