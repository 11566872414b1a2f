//! Word pools behind the realistic values: names, places, card brands, merchants with their
//! categories, products, statuses. Plain data; [`super::values`] draws from it.

/// Given names.
pub const FIRST_NAMES: &[&str] = &[
    "Maria", "James", "Aisha", "Wei", "Olivia", "Mateo", "Sofia", "Liam", "Amara", "Noah", "Yuki",
    "Emma", "Lucas", "Priya", "Elena", "Daniel", "Fatima", "Hugo", "Chloe", "Arjun", "Zoe",
    "Gabriel", "Hannah", "Omar", "Ingrid", "Leo", "Mei", "Samuel", "Nora", "Diego", "Lena",
    "Kwame", "Isabel", "Felix", "Anya", "Tomás", "Grace", "Ravi", "Clara", "Ethan", "Julia",
    "Kenji", "Alice", "Marco", "Sara", "Jonas", "Layla", "Victor", "Ruth", "Mohammed",
];

/// Family names.
pub const LAST_NAMES: &[&str] = &[
    "Garcia",
    "Smith",
    "Okafor",
    "Chen",
    "Johnson",
    "Rossi",
    "Müller",
    "Nguyen",
    "Kowalski",
    "Silva",
    "Tanaka",
    "Brown",
    "Martin",
    "Patel",
    "Novak",
    "Dubois",
    "Haddad",
    "Jensen",
    "Kim",
    "Lopez",
    "Williams",
    "Schmidt",
    "Costa",
    "Ivanova",
    "Andersson",
    "Moreau",
    "Singh",
    "Murphy",
    "Fischer",
    "Yamamoto",
    "Hernandez",
    "Taylor",
    "Mensah",
    "Larsen",
    "Romano",
    "Wilson",
    "Sato",
    "Becker",
    "Ortiz",
    "Nielsen",
    "Clarke",
    "Varga",
    "Petrov",
    "Adams",
    "Ali",
    "Walker",
    "Kaur",
    "Santos",
    "Weber",
    "Cohen",
];

/// Domains of generated email addresses (reserved for examples, never deliverable).
pub const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.net",
    "example.org",
    "mail.example.com",
    "inbox.example.net",
];

/// Street names.
pub const STREETS: &[&str] = &[
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "River",
    "Sunset",
    "Highland",
    "Church",
    "Mill",
    "Spring",
    "Chestnut",
    "Walnut",
    "Willow",
    "Main",
    "Forest",
    "Meadow",
    "Harbor",
    "Ridge",
    "Valley",
    "Lincoln",
    "Franklin",
    "Jefferson",
    "Grove",
];

/// Street suffixes.
pub const STREET_SUFFIXES: &[&str] = &[
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Drive",
    "Court",
    "Boulevard",
    "Way",
    "Place",
];

/// (city, state, first three ZIP digits).
pub const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "IL", "627"),
    ("Austin", "TX", "787"),
    ("Portland", "OR", "972"),
    ("Denver", "CO", "802"),
    ("Madison", "WI", "537"),
    ("Raleigh", "NC", "276"),
    ("Boise", "ID", "837"),
    ("Albany", "NY", "122"),
    ("Tucson", "AZ", "857"),
    ("Omaha", "NE", "681"),
    ("Columbus", "OH", "432"),
    ("Richmond", "VA", "232"),
    ("Sacramento", "CA", "958"),
    ("Savannah", "GA", "314"),
    ("Burlington", "VT", "054"),
    ("Santa Fe", "NM", "875"),
    ("Des Moines", "IA", "503"),
    ("Nashville", "TN", "372"),
    ("Anchorage", "AK", "995"),
    ("Providence", "RI", "029"),
];

/// (ISO 3166-1 alpha-2 code, country name).
pub const COUNTRIES: &[(&str, &str)] = &[
    ("US", "United States"),
    ("GB", "United Kingdom"),
    ("DE", "Germany"),
    ("FR", "France"),
    ("ES", "Spain"),
    ("IT", "Italy"),
    ("NL", "Netherlands"),
    ("CA", "Canada"),
    ("AU", "Australia"),
    ("BR", "Brazil"),
    ("MX", "Mexico"),
    ("JP", "Japan"),
    ("IN", "India"),
    ("SE", "Sweden"),
    ("PL", "Poland"),
    ("NG", "Nigeria"),
    ("KR", "South Korea"),
    ("IE", "Ireland"),
];

/// (card brand, weight in percent).
pub const CARD_BRANDS: &[(&str, u32)] = &[
    ("Visa", 50),
    ("Mastercard", 30),
    ("Amex", 12),
    ("Discover", 8),
];

/// (merchant, merchant category).
pub const MERCHANTS: &[(&str, &str)] = &[
    ("Blue Bottle Coffee", "dining"),
    ("Sweetgreen", "dining"),
    ("Chipotle", "dining"),
    ("Joe's Pizza", "dining"),
    ("Whole Foods Market", "groceries"),
    ("Trader Joe's", "groceries"),
    ("Safeway", "groceries"),
    ("Aldi", "groceries"),
    ("Shell", "fuel"),
    ("Chevron", "fuel"),
    ("BP", "fuel"),
    ("Delta Air Lines", "travel"),
    ("United Airlines", "travel"),
    ("Marriott", "travel"),
    ("Airbnb", "travel"),
    ("Uber", "transport"),
    ("Lyft", "transport"),
    ("Amtrak", "transport"),
    ("Amazon", "shopping"),
    ("Target", "shopping"),
    ("IKEA", "shopping"),
    ("Best Buy", "electronics"),
    ("Apple Store", "electronics"),
    ("Netflix", "entertainment"),
    ("Spotify", "entertainment"),
    ("AMC Theatres", "entertainment"),
    ("Steam", "entertainment"),
    ("CVS Pharmacy", "health"),
    ("Walgreens", "health"),
    ("Planet Fitness", "health"),
    ("Comcast", "utilities"),
    ("PG&E", "utilities"),
    ("Verizon", "utilities"),
];

/// (transaction status, weight in percent).
pub const STATUSES: &[(&str, u32)] = &[
    ("approved", 86),
    ("pending", 6),
    ("declined", 6),
    ("refunded", 2),
];

/// (ISO 4217 currency, weight in percent).
pub const CURRENCIES: &[(&str, u32)] = &[("USD", 70), ("EUR", 15), ("GBP", 10), ("CAD", 5)];

/// Product adjectives.
pub const PRODUCT_ADJECTIVES: &[&str] = &[
    "Ergonomic",
    "Rustic",
    "Sleek",
    "Compact",
    "Durable",
    "Handcrafted",
    "Lightweight",
    "Classic",
    "Modern",
    "Vintage",
    "Portable",
    "Premium",
    "Smart",
    "Eco",
    "Deluxe",
    "Minimalist",
];

/// Product materials.
pub const PRODUCT_MATERIALS: &[&str] = &[
    "Steel", "Bamboo", "Leather", "Cotton", "Oak", "Ceramic", "Wool", "Aluminum", "Glass", "Linen",
    "Walnut", "Copper", "Recycled", "Silicone",
];

/// Product nouns.
pub const PRODUCT_NOUNS: &[&str] = &[
    "Chair",
    "Desk Lamp",
    "Backpack",
    "Water Bottle",
    "Headphones",
    "Notebook",
    "Mug",
    "Jacket",
    "Sneakers",
    "Cutting Board",
    "Keyboard",
    "Blanket",
    "Plant Pot",
    "Wallet",
    "Speaker",
    "Yoga Mat",
    "Watch",
    "Tote Bag",
    "Kettle",
    "Sunglasses",
];

/// Product categories.
pub const PRODUCT_CATEGORIES: &[&str] = &[
    "electronics",
    "home",
    "kitchen",
    "outdoors",
    "apparel",
    "books",
    "toys",
    "beauty",
    "sports",
    "garden",
    "office",
];

/// Tags of people.
pub const USER_TAGS: &[&str] = &[
    "vip",
    "newsletter",
    "beta",
    "referral",
    "mobile",
    "churn-risk",
    "early-adopter",
    "b2b",
];

/// Tags of products.
pub const PRODUCT_TAGS: &[&str] = &[
    "new",
    "sale",
    "bestseller",
    "eco",
    "limited",
    "gift",
    "clearance",
    "bundle",
];

/// Words of free text (descriptions, notes).
pub const WORDS: &[&str] = &[
    "customer",
    "order",
    "payment",
    "delivery",
    "requested",
    "refund",
    "account",
    "updated",
    "card",
    "review",
    "shipped",
    "returned",
    "support",
    "contacted",
    "verified",
    "address",
    "changed",
    "invoice",
    "pending",
    "approved",
    "quality",
    "excellent",
    "fast",
    "package",
    "arrived",
    "damaged",
    "replacement",
    "sent",
    "loyalty",
    "points",
    "applied",
    "discount",
    "weekend",
    "store",
    "online",
    "subscription",
    "renewed",
    "monthly",
    "plan",
    "upgraded",
    "comfortable",
    "design",
    "battery",
    "lasts",
    "long",
    "recommend",
    "friends",
    "gift",
];

/// Transaction channels.
pub const CHANNELS: &[&str] = &["online", "in_store", "mobile_app", "phone"];

/// Devices.
pub const DEVICES: &[&str] = &["ios", "android", "web", "pos_terminal"];

/// Colours.
pub const COLORS: &[&str] = &[
    "black", "white", "navy", "olive", "sand", "charcoal", "red", "teal", "mustard",
];

/// UI themes and languages of user preferences.
pub const THEMES: &[&str] = &["light", "dark", "system"];

/// Languages (BCP 47).
pub const LANGUAGES: &[&str] = &["en", "es", "de", "fr", "pt-BR", "ja", "it", "nl"];

/// Merchant category codes (ISO 18245) for the categories above.
pub fn mcc(category: &str) -> u32 {
    match category {
        "dining" => 5812,
        "groceries" => 5411,
        "fuel" => 5541,
        "travel" => 4511,
        "transport" => 4121,
        "shopping" => 5399,
        "electronics" => 5732,
        "entertainment" => 7832,
        "health" => 5912,
        "utilities" => 4900,
        _ => 5999,
    }
}
