/** The formats a stored image may have (the API's IMAGE_FORMATS; store/format-inspector.ts checks them). */
export type ImageFormat = "raw" | "qcow2" | "iso";
