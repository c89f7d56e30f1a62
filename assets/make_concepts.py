"""Builds ``assets/concepts.txt``, the default concept vocabulary of the open_clip labeller.

Run from the repository root: ``.venv/bin/python assets/make_concepts.py`` (rewrites the file).

Sources, and nothing else (no data file is copied from another repository):

* the category names that ship inside torchvision (``torchvision.models._meta``): ImageNet-1k's
  1,000 classes, COCO's 80 object categories and person keypoints, Pascal VOC's 20 classes and
  Kinetics-400's 400 human actions;
* the class names of the datasets MU Audit trains on (digits, Fashion-MNIST, CIFAR-10), written
  as words;
* our own lists, below: colours, textures and patterns, shapes, strokes and lines, object and
  body parts, materials, scenes and places, and common things of everyday life.

Names are lower-cased, underscores become spaces, repeats are dropped (first one kept), and the
lists are written in the order above.
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "concepts.txt"

DATASET_WORDS = """
zero, one, two, three, four, five, six, seven, eight, nine, digit, handwritten digit, handwriting, number, numeral,
t-shirt top, trouser, trousers, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot, airplane, automobile,
bird, cat, deer, dog, frog, horse, ship, truck
"""

COLOURS = """
red, orange, yellow, green, blue, purple, violet, pink, brown, black, white, grey, gray, beige, tan, cream, ivory,
gold, silver, bronze, maroon, crimson, scarlet, burgundy, magenta, fuchsia, lavender, lilac, turquoise, teal, cyan,
aqua, navy, blue, sky blue, royal blue, olive green, lime green, emerald, mint green, khaki, mustard, amber, peach,
coral, salmon, rust, copper, charcoal, dark, light, pale, bright, dim, vivid, pastel, colourful, monochrome, black and
white, dark background, light background, bright spot, dark spot
"""

TEXTURES = """
banded, blotchy, braided, bubbly, bumpy, chequered, checkered, cobwebbed, cracked, crosshatched, crystalline, dotted,
fibrous, flecked, freckled, frilly, gauzy, grid, grooved, honeycombed, interlaced, knitted, lacelike, lined, marbled,
matted, meshed, paisley, perforated, pitted, pleated, polka-dotted, porous, potholed, scaly, smeared, spiralled,
sprinkled, stained, stratified, striped, studded, swirly, veined, waffled, woven, wrinkled, zigzagged, smooth, rough,
glossy, shiny, matte, fuzzy, furry, hairy, feathery, spiky, prickly, soft, hard, wet, dry, grainy, sandy, rocky,
muddy, dusty, rusty, wooden, leathery, silky, velvety, woolly, fluffy, transparent, translucent, opaque, reflective,
speckled, mottled, patchy, tiled, bricked, ribbed, corrugated, quilted, embroidered, sequined, glittery, plaid,
tartan, herringbone, houndstooth, camouflage, floral pattern, geometric pattern, abstract pattern, noise, blur,
gradient, stripes, checkers, dots, spots, waves, ripples
"""

SHAPES = """
circle, ring, disc, dot, square, rectangle, triangle, diamond, rhombus, pentagon, hexagon, octagon, star, heart,
cross, plus sign, oval, ellipse, crescent, arc, semicircle, spiral, helix, cube, sphere, cylinder, cone, pyramid,
prism, torus, arrow, chevron, blob, curve, loop, hook, zigzag, wave, spike, point, corner, edge
"""

STROKES = """
line, straight line, horizontal line, vertical line, diagonal line, curved line, thick line, thin line, dashed line,
dotted line, parallel lines, crossing lines, stroke, horizontal stroke, vertical stroke, diagonal stroke, curved
stroke, closed loop, open loop, vertical edge, horizontal edge, diagonal edge, sharp edge, soft edge, outline,
silhouette, contour, border, frame
"""

PARTS = """
head, face, forehead, eye, eyes, eyebrow, eyelash, nose, nostril, mouth, lips, teeth, tongue, chin, cheek, ear, jaw,
neck, throat, shoulder, arm, elbow, forearm, wrist, hand, palm, finger, thumb, fingernail, chest, breast, back, belly,
waist, hip, leg, thigh, knee, shin, calf, ankle, foot, toe, heel, skin, hair, beard, moustache, skull, bone, muscle,
fur, feather, wing, beak, claw, paw, hoof, horn, antler, tusk, tail fin, gill, scale, shell, whisker, mane, snout,
trunk, leaf, leaves, stem, branch, twig, bark, root, flower, petal, seed, fruit, thorn, bud, blossom, wheel, tire,
rim, hubcap, headlight, taillight, windshield, bumper, license plate, door handle, window pane, roof, chimney, wall,
floor, ceiling, stairs, staircase, railing, balcony, column, pillar, arch, beam, fence, gate, screen, keyboard, key,
button, knob, switch, lever, dial, display, lens, strap, buckle, zipper, pocket, collar, sleeve, cuff, hem, hood,
lace, sole, laces, heel, of, a, shoe, toe cap, brim, handle, blade, tip, lid, cap, cork, spout, neck, of, a, bottle,
label, logo, text, letter, pedal, saddle, handlebar, chain, spoke, propeller, engine, exhaust pipe, sail, mast, hull,
deck, anchor, cockpit, tail fin
"""

MATERIALS = """
wood, metal, steel, iron, aluminium, glass, plastic, rubber, paper, cardboard, cloth, fabric, cotton, wool, silk,
linen, denim, leather, suede, fur, fleece, nylon, polyester, velvet, lace, canvas, stone, rock, marble, granite,
concrete, brick, tile, ceramic, porcelain, clay, sand, soil, dirt, mud, gravel, grass, hay, straw, bamboo, wicker,
cork, foam, sponge, wax, oil, water, ice, snow, steam, smoke, fire, flame, ash, dust, crystal, gem, diamond, pearl,
plaster, asphalt, carpet, mesh, wire, rope, string, thread, yarn
"""

SCENES = """
sky, cloud, clouds, sun, moon, stars, night, day, sunset, sunrise, rain, storm, lightning, fog, mist, snowfall,
rainbow, mountain, hill, valley, cliff, canyon, cave, desert, dune, beach, shore, coast, ocean, sea, lake, river,
stream, waterfall, pond, swamp, marsh, forest, woods, jungle, rainforest, field, meadow, farm, farmland, orchard,
vineyard, garden, park, lawn, prairie, savanna, tundra, glacier, volcano, island, reef, underwater, city, town,
village, street, road, highway, bridge, tunnel, sidewalk, crosswalk, intersection, parking lot, alley, square, plaza,
skyline, skyscraper, building, house, cottage, cabin, apartment, tower, castle, palace, church, temple, mosque,
cathedral, ruins, factory, warehouse, barn, stable, shed, garage, gas station, train station, platform, railway,
airport, runway, harbour, harbor, port, dock, pier, marina, stadium, arena, playground, swimming pool, gym, office,
classroom, library, museum, gallery, theater, cinema, restaurant, cafe, bar, kitchen, dining room, living room,
bedroom, bathroom, hallway, corridor, basement, attic, lobby, shop, store, supermarket, market, bakery, hospital,
laboratory, studio, stage, concert hall, courtroom, prison, campsite, tent, indoor, outdoor, interior, exterior,
crowd, traffic
"""

THINGS = """
person, man, woman, child, boy, girl, baby, people, face portrait, group of people, hand holding, crowd of people,
athlete, player, soldier, worker, doctor, chef, dancer, musician, rider, animal, pet, mammal, reptile, amphibian,
insect, fish, bird of prey, seabird, songbird, butterfly, bee, spider, snake, lizard, turtle, cow, sheep, goat, pig,
chicken, duck, goose, rabbit, mouse, rat, squirrel, fox, wolf, bear, lion, tiger, leopard, elephant, giraffe, zebra,
monkey, ape, camel, kangaroo, deer, antelope, whale, dolphin, shark, seal, penguin, owl, eagle, parrot, car, bus,
train, tram, bicycle, motorcycle, scooter, boat, yacht, canoe, kayak, ship, aircraft, helicopter, rocket, tractor,
van, taxi, ambulance, fire engine, police car, chair, table, desk, sofa, couch, bed, lamp, shelf, bookshelf, cabinet,
drawer, wardrobe, mirror, clock, vase, pot, pan, plate, bowl, cup, mug, glass of water, bottle, jar, basket, box, bag,
backpack, suitcase, umbrella, wallet, purse, key ring, necklace, bracelet, watch, phone, smartphone, laptop, computer,
television, monitor, camera, radio, speaker, headphones, microphone, guitar, piano, violin, drum, book, newspaper,
magazine, letter, envelope, pen, pencil, brush, scissors, knife, fork, spoon, hammer, screwdriver, saw, drill, tool,
toy, ball, doll, teddy bear, kite, balloon, candle, lantern, flag, sign, poster, painting, photograph, map, food,
meal, bread, cake, cookie, pizza, sandwich, burger, salad, soup, rice, pasta, noodles, meat, steak, sausage, egg,
cheese, butter, fruit, apple, banana, orange, lemon, strawberry, grape, cherry, pear, peach, watermelon, vegetable,
carrot, tomato, potato, onion, corn, broccoli, mushroom, pepper, coffee, tea, milk, juice, wine, beer, ice cream,
chocolate, candy, tree, pine tree, palm tree, oak, bush, shrub, hedge, flower bed, rose, tulip, sunflower, daisy,
cactus, moss, vine, weed, clothing, shoe, shoes, boot, boots, high heels, slipper, sock, hat, helmet, cap, scarf,
glove, mitten, jacket, sweater, hoodie, vest, skirt, jeans, shorts, pants, suit, tie, uniform, costume, swimsuit,
pyjamas, apron, belt
"""


def torchvision_names() -> list[str]:
    """Category names bundled with torchvision: ImageNet-1k, COCO, VOC, Kinetics-400."""
    from torchvision.models import _meta

    names: list[str] = []
    for table in (_meta._IMAGENET_CATEGORIES, _meta._COCO_CATEGORIES, _meta._COCO_PERSON_KEYPOINT_NAMES, _meta._VOC_CATEGORIES,
                  _meta._KINETICS400_CATEGORIES):
        names += [n for n in table if n not in ("N/A", "__background__", "__background____")]
    return names


def own_words(block: str) -> list[str]:
    """Our lists are comma-separated concepts (a concept may be several words)."""
    return [word.strip() for word in block.replace("\n", " ").split(",") if word.strip()]


def build() -> list[str]:
    seen: set[str] = set()
    concepts: list[str] = []
    for name in [*own_words(DATASET_WORDS), *torchvision_names(),
                 *(w for block in (COLOURS, TEXTURES, SHAPES, STROKES, PARTS, MATERIALS, SCENES, THINGS) for w in own_words(block))]:
        word = " ".join(name.replace("_", " ").lower().split())
        if word and word not in seen:
            seen.add(word)
            concepts.append(word)
    return concepts


def main() -> None:
    concepts = build()
    header = [
        "# MU Audit's default concept vocabulary for the open_clip neuron labeller (CLIP-Dissect), one concept a line.",
        f"# {len(concepts)} concepts. Made by assets/make_concepts.py from the category names bundled with torchvision",
        "# (ImageNet-1k, COCO objects and keypoints, Pascal VOC, Kinetics-400 actions), the built-in datasets' class names,",
        "# and MU Audit's own lists of colours, textures, shapes, strokes, parts, materials, scenes and everyday things.",
    ]
    OUT.write_text("\n".join(header + concepts) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(concepts)} concepts)")


if __name__ == "__main__":
    main()
